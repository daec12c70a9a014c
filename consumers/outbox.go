package consumers

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger/transport"
)

// Outbox bounds.
const (
	// outboxBatchMax bounds the entries published in one round.
	outboxBatchMax = 1000
	// outboxEvery is how often an outbox is read when no commit that
	// wrote to it kicked its publisher.
	outboxEvery = time.Second
)

// outboxSource is one outbox of the store and the stream its entries are
// published to: the alert changes, or the stock sync instructions.
type outboxSource interface {
	// name says what the entries are, for logs.
	name() string
	// wanted reports whether the commit of f wrote to this outbox.
	wanted(f *flight) bool
	// flush publishes up to outboxBatchMax entries, oldest first, passing
	// over those of batches whose checkpoint lies below floor (published
	// before); waits for the acks; deletes them; and returns how many it
	// read.
	flush(ctx context.Context, floor uint64) (int, error)
	// stream and subjects name where the entries go, for lastPublished.
	stream() string
	subjects() string
}

// outboxPublisher drains one of the store's outboxes onto its stream. The
// store adds each batch's entries to the outbox in the batch's transaction;
// the publisher removes them once the stream has them, so that a crash
// between commit and publish loses none, and each entry carries an
// idempotency key, so that one published twice (a crash between publish
// and delete) is stored once within the stream's duplicate window. It runs
// on a goroutine of its own (start); committed only kicks it.
type outboxPublisher struct {
	src outboxSource
	js  jetstream.JetStream
	log *slog.Logger
	// floor: entries of batches whose checkpoint lies below it were
	// published before this process started (skipPublished, skipBelow).
	// Set before start.
	floor uint64
	kick  chan struct{} // one kick pending at most
}

func newOutboxPublisher(src outboxSource, js jetstream.JetStream, log *slog.Logger) *outboxPublisher {
	return &outboxPublisher{src: src, js: js, log: log, kick: make(chan struct{}, 1)}
}

// committed kicks the publisher when f wrote to its outbox.
func (op *outboxPublisher) committed(_ context.Context, f *flight) {
	if op.src.wanted(f) {
		op.kickNow()
	}
}

// kickNow makes the publisher read the outbox now; a kick already pending
// covers this one.
func (op *outboxPublisher) kickNow() {
	select {
	case op.kick <- struct{}{}:
	default:
	}
}

// start runs the publisher until the returned stop is called, which kicks it
// once more (to publish what the last batches wrote), stops it and waits for
// it. ctx's values are kept, not its end: the publisher outlives the fold
// loop's last batch.
func (op *outboxPublisher) start(ctx context.Context) (stop func()) {
	var wg sync.WaitGroup
	pubCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	wg.Add(1)
	go func() { defer wg.Done(); op.run(pubCtx) }()
	return func() {
		op.kickNow()
		cancel()
		wg.Wait()
	}
}

// run publishes the outbox every outboxEvery, and at once when kicked,
// until ctx ends.
func (op *outboxPublisher) run(ctx context.Context) {
	tick := time.NewTicker(outboxEvery)
	defer tick.Stop()
	for {
		for {
			n, err := op.src.flush(ctx, op.floor)
			if err != nil {
				if ctx.Err() == nil {
					op.log.Warn(op.src.name()+" publish failed; will retry", "err", err)
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
		case <-op.kick:
		case <-tick.C:
		}
	}
}

// skipPublished sets the floor to the batch checkpoint of the last message
// on the stream (0 when there is none), for a store rebuilt from the event
// stream at start: the entries of batches below it were published before.
func (op *outboxPublisher) skipPublished(ctx context.Context) {
	op.floor = 0
	m, err := transport.LastMsgFromLeader(ctx, op.js.Conn(), op.src.stream(), op.src.subjects())
	if err != nil || m == nil {
		return
	}
	op.floor, _ = strconv.ParseUint(m.Header.Get(transport.HeaderCheckpoint), 10, 64)
}

// skipBelow sets the floor to seq: the entries of batches below it were
// published before (a read model rebuilt from sequence 1 under a consumer
// that had acknowledged up to seq−1).
func (op *outboxPublisher) skipBelow(seq uint64) { op.floor = max(op.floor, seq) }

// awaitAcks waits for every future's ack, or the first error.
func awaitAcks(ctx context.Context, futures []jetstream.PubAckFuture) error {
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
