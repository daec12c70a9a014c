package consumers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger"
	"stockledger/projections"
)

const (
	// AsOfEventsMax bounds the events one as-of fold reads from the stream.
	AsOfEventsMax = 1_000_000
	// asOfIdle bounds the wait for the next message of an as-of read.
	asOfIdle = 5 * time.Second
)

// ErrHistoryTooLong is returned by FoldAsOf for a SKU with more than
// AsOfEventsMax events.
var ErrHistoryTooLong = errors.New("history too long")

// FoldAsOf answers a SKU's state at a past moment: it reads the SKU's events
// from the stream in stream order, folds those that happened (their at) at
// or before asOf with cfg, exactly as the projector would (messages the
// projector dead-letters are skipped), and then advances the SKU's clock to
// asOf, so that orders due by then are late. It returns nil and no error when
// the stream holds no event of the SKU that happened by asOf.
func FoldAsOf(ctx context.Context, js jetstream.JetStream, shop, sku string, asOf time.Time, cfg projections.FoldConfig) (*projections.SKU, error) {
	stream, err := js.Stream(ctx, ledger.EventStream)
	if err != nil {
		return nil, fmt.Errorf("as of %s: event stream: %w", asOf.Format(time.RFC3339), err)
	}
	partitions := ledger.EventPartitions(stream.CachedInfo().Config)
	subject := ledger.StoredEventSubject(shop, sku, partitions)
	last, err := stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("as of %s: last event of %s: %w", asOf.Format(time.RFC3339), subject, err)
	}
	cons, err := js.OrderedConsumer(ctx, ledger.EventStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, fmt.Errorf("as of %s: read history of %s: %w", asOf.Format(time.RFC3339), subject, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return nil, fmt.Errorf("as of %s: read history of %s: %w", asOf.Format(time.RFC3339), subject, err)
	}
	defer it.Stop()
	s := projections.NewSKU(shop, sku)
	s.Config = cfg
	folded := 0
	for n := 0; ; n++ {
		if n == AsOfEventsMax {
			return nil, fmt.Errorf("as of %s: %s has more than %d events: %w", asOf.Format(time.RFC3339), subject, AsOfEventsMax, ErrHistoryTooLong)
		}
		m, err := it.Next(jetstream.NextMaxWait(asOfIdle))
		if err != nil {
			return nil, fmt.Errorf("as of %s: read history of %s: %w", asOf.Format(time.RFC3339), subject, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return nil, fmt.Errorf("as of %s: message metadata: %w", asOf.Format(time.RFC3339), err)
		}
		seq := meta.Sequence.Stream
		if e, reason := decodeStored(m.Data(), m.Subject(), seq, meta.Timestamp, partitions); reason == "" && !e.At.After(asOf) {
			if _, err := s.Apply(seq, &e); err == nil {
				folded++
			}
		}
		if seq >= last.Sequence {
			break
		}
	}
	if folded == 0 {
		return nil, nil
	}
	s.Advance(asOf)
	return s, nil
}
