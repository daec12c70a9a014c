package consumers

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger/transport"
	"stockledger/projections"
)

// Alert outbox bounds.
const (
	// outboxBatchMax bounds the alert changes published in one round.
	outboxBatchMax = 1000
	// outboxEvery is how often the outbox is read when no commit with
	// alert changes kicked the publisher.
	outboxEvery = time.Second
)

// alertPublisher drains the store's alert outbox onto the alert stream. The
// store adds each batch's alert changes to the outbox in the batch's
// transaction; the publisher removes them once the alert stream has them.
// It runs on a goroutine of its own (start); committed only kicks it.
type alertPublisher struct {
	js     jetstream.JetStream
	outbox projections.Outbox
	log    *slog.Logger
	// floor: with Options.SkipPublishedAlerts, changes of batches whose
	// checkpoint lies below it were published before this process started
	// (see skipPublished). Set before start.
	floor uint64
	kick  chan struct{} // one kick pending at most
}

func newAlertPublisher(js jetstream.JetStream, outbox projections.Outbox, log *slog.Logger) *alertPublisher {
	return &alertPublisher{js: js, outbox: outbox, log: log, kick: make(chan struct{}, 1)}
}

// committed kicks the publisher when f raised alert changes.
func (ap *alertPublisher) committed(_ context.Context, f *flight) {
	if f.alerts > 0 {
		ap.kickNow()
	}
}

// kickNow makes the publisher read the outbox now; a kick already pending
// covers this one.
func (ap *alertPublisher) kickNow() {
	select {
	case ap.kick <- struct{}{}:
	default:
	}
}

// start runs the publisher until the returned stop is called, which kicks it
// once more (to publish what the last batches raised), stops it and waits
// for it. ctx's values are kept, not its end: the publisher outlives the
// fold loop's last batch.
func (ap *alertPublisher) start(ctx context.Context) (stop func()) {
	var wg sync.WaitGroup
	pubCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	wg.Add(1)
	go func() { defer wg.Done(); ap.run(pubCtx) }()
	return func() {
		ap.kickNow()
		cancel()
		wg.Wait()
	}
}

// run publishes the outbox every outboxEvery, and at once when kicked,
// until ctx ends.
func (ap *alertPublisher) run(ctx context.Context) {
	tick := time.NewTicker(outboxEvery)
	defer tick.Stop()
	for {
		for {
			n, err := ap.flush(ctx)
			if err != nil {
				if ctx.Err() == nil {
					ap.log.Warn("alert publish failed; will retry", "err", err)
				}
				break
			}
			if n < outboxBatchMax {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ap.kick:
		case <-tick.C:
		}
	}
}

// flush publishes up to outboxBatchMax outbox entries, each change with
// Nats-Msg-Id <alert id>:<rev> so that a change published twice (a crash
// between publish and delete) is stored once within the stream's duplicate
// window, waits for the acks and then deletes the entries. It returns how
// many entries it read.
func (ap *alertPublisher) flush(ctx context.Context) (int, error) {
	pending, err := ap.outbox.PendingAlerts(ctx, outboxBatchMax)
	if err != nil || len(pending) == 0 {
		return 0, err
	}
	futures := make([]jetstream.PubAckFuture, 0, len(pending))
	for _, ob := range pending {
		if ap.floor > 0 && ob.Checkpoint < ap.floor {
			continue // published before this process started
		}
		f, err := ap.publish(ob)
		if err != nil {
			return 0, err
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return 0, fmt.Errorf("publish alert: %w", err)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if err := ap.outbox.DeletePendingAlerts(ctx, pending[len(pending)-1].ID); err != nil {
		return 0, fmt.Errorf("delete published alerts: %w", err)
	}
	return len(pending), nil
}

// publish sends one outbox entry to the alert stream without waiting for
// its ack; the entry's checkpoint goes in a header (see skipPublished).
func (ap *alertPublisher) publish(ob projections.OutboxAlert) (jetstream.PubAckFuture, error) {
	data, err := json.Marshal(ob.Alert)
	if err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: transport.AlertSubject(ob.Alert.Shop, string(ob.Alert.Kind)), Data: data, Header: nats.Header{}}
	msg.Header.Set(transport.HeaderCheckpoint, strconv.FormatUint(ob.Checkpoint, 10))
	f, err := ap.js.PublishMsgAsync(msg, jetstream.WithMsgID(ob.Alert.ID+":"+strconv.Itoa(ob.Alert.Rev)), jetstream.WithExpectStream(transport.AlertStream))
	if err != nil {
		return nil, fmt.Errorf("publish alert %s: %w", ob.Alert.ID, err)
	}
	return f, nil
}

// skipPublished sets the floor to the batch checkpoint of the last message
// on the alert stream (0 when there is none), for a store rebuilt from the
// stream at start: the changes of batches below it were published before.
func (ap *alertPublisher) skipPublished(ctx context.Context) {
	ap.floor = 0
	st, err := ap.js.Stream(ctx, transport.AlertStream)
	if err != nil {
		return
	}
	m, err := st.GetLastMsgForSubject(ctx, transport.AlertSubjectRoot+".>")
	if err != nil {
		return
	}
	ap.floor, _ = strconv.ParseUint(m.Header.Get(transport.HeaderCheckpoint), 10, 64)
}

// skipBelow sets the floor to seq: the changes of batches below it were
// published before (a read model rebuilt from sequence 1 under a consumer
// that had acknowledged up to seq−1).
func (ap *alertPublisher) skipBelow(seq uint64) { ap.floor = max(ap.floor, seq) }
