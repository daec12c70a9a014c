package consumers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"stockledger/ledger/transport"
	"stockledger/projections"
)

const (
	// AsOfEventsMax bounds the events one as-of fold reads from the stream.
	AsOfEventsMax = 1_000_000
)

// FoldAsOf answers a SKU's state at a past moment: it reads the SKU's events
// from the stream in stream order (history), folds those that happened (their
// at) at or before asOf with cfg, exactly as the projector would (messages the
// projector dead-letters are skipped), and then advances the SKU's clock to
// asOf, so that orders due by then are late. It returns nil and no error when
// the stream holds no event of the SKU that happened by asOf, and an error
// wrapping transport.ErrHistoryTooLong past AsOfEventsMax events.
func FoldAsOf(ctx context.Context, history *transport.History, shop, sku string, asOf time.Time, cfg projections.FoldConfig) (*projections.SKU, error) {
	partitions, err := history.Partitions(ctx)
	if err != nil {
		return nil, fmt.Errorf("as of %s: %w", asOf.Format(time.RFC3339), err)
	}
	s := projections.NewSKU(shop, sku)
	s.Config = cfg
	folded := 0
	err = history.Each(ctx, shop, sku, AsOfEventsMax, func(m transport.StoredEvent) error {
		if e, reason := decodeStored(m.Data, m.Subject, m.Seq, m.StoredAt, partitions); reason == "" && !e.At.After(asOf) {
			if _, err := s.Apply(m.Seq, &e); err == nil {
				folded++
			}
		}
		return nil
	})
	if errors.Is(err, transport.ErrNoEvents) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("as of %s: %w", asOf.Format(time.RFC3339), err)
	}
	if folded == 0 {
		return nil, nil
	}
	s.Advance(asOf)
	return s, nil
}
