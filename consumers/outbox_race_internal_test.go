package consumers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// fakeEntry is an outbox entry of fakeOutbox: its batch's checkpoint and a
// name.
type fakeEntry struct {
	ckpt uint64
	id   string
}

// fakeOutbox is an outbox source that records what it publishes, without a
// store or a stream. duringFlush, when set, runs once inside the next flush,
// after its read: a batch committing while the drain works. failNext makes
// the next flush fail before it reads.
type fakeOutbox struct {
	pending     []fakeEntry
	published   []string
	duringFlush func()
	failNext    bool
}

func (fo *fakeOutbox) name() string        { return "fake" }
func (fo *fakeOutbox) wanted(*flight) bool { return true }
func (fo *fakeOutbox) stream() string      { return "" }
func (fo *fakeOutbox) subjects() string    { return "" }
func (fo *fakeOutbox) fast() bool          { return true }

// commit adds a batch's entry (named after its checkpoint) to the outbox.
func (fo *fakeOutbox) commit(ckpt uint64, id string) {
	fo.pending = append(fo.pending, fakeEntry{ckpt, id})
}

func (fo *fakeOutbox) publishFlight(f *flight, _ uint64) ([]jetstream.PubAckFuture, error) {
	fo.published = append(fo.published, fmt.Sprintf("batch-%d", f.lastSeq))
	return nil, nil
}

func (fo *fakeOutbox) flush(_ context.Context, floor, _ uint64) (int, uint64, error) {
	if fo.failNext {
		fo.failNext = false
		return 0, 0, errors.New("store unreachable")
	}
	read := slices.Clone(fo.pending)
	fo.pending = fo.pending[:0]
	if f := fo.duringFlush; f != nil {
		fo.duringFlush = nil
		f()
	}
	for _, e := range read {
		if e.ckpt >= floor {
			fo.published = append(fo.published, e.id)
		}
	}
	var last uint64
	if len(read) > 0 {
		last = read[len(read)-1].ckpt
	}
	return len(read), last, nil
}

// publishQueued publishes the flight the fast path has queued, as the
// publisher's loop does when it takes the queue before a pending kick.
func publishQueued(t *testing.T, op *outboxPublisher, ckpt uint64) {
	t.Helper()
	select {
	case f := <-op.mem:
		op.publishFast(context.Background(), f)
	default:
		t.Fatalf("batch %d was not queued for the fast path", ckpt)
	}
}

// TestOutboxCommitWhileDrainTakesFastPath: a batch commits (its entries in
// the outbox, its publisher kicked) while the drain that empties the
// outbox is about to take the fast path, and the next batch comes as a
// flight. Whichever the publisher takes first, the kick or the flight, the
// first batch's entries are published.
func TestOutboxCommitWhileDrainTakesFastPath(t *testing.T) {
	src := &fakeOutbox{}
	op := newOutboxPublisher(src, nil, quietLog())
	ctx := context.Background()
	src.commit(10, "batch-10")
	// Batch 20 commits while the drain's read of the outbox is done: the
	// fast path is not taken yet, so committed only kicks.
	src.duringFlush = func() {
		src.commit(20, "batch-20")
		op.committed(ctx, &flight{lastSeq: 20})
	}
	op.drain(ctx)
	if !op.fastOn.Load() {
		t.Fatal("the drain emptied the outbox and did not take the fast path")
	}
	// Batch 30 comes as a flight; the publisher takes it before the kick.
	src.commit(30, "batch-30")
	op.committed(ctx, &flight{lastSeq: 30})
	publishQueued(t, op, 30)
	for _, id := range []string{"batch-10", "batch-20", "batch-30"} {
		if !slices.Contains(src.published, id) {
			t.Errorf("%s's entries were never published; published %v", id, src.published)
		}
	}
}

// TestOutboxSweepAfterFastPublish: batch 40 is published from memory, the
// drain behind it fails (the store went away) and leaves the fast path, and
// a sweep then commits its alert changes at checkpoint 40, the batch
// before it. The next drain publishes the sweep's entries: memNext, past
// 40, must not pass over them.
func TestOutboxSweepAfterFastPublish(t *testing.T) {
	src := &fakeOutbox{}
	op := newOutboxPublisher(src, nil, quietLog())
	ctx := context.Background()
	op.drain(ctx) // empty outbox: the fast path is taken
	src.commit(40, "batch-40")
	op.committed(ctx, &flight{lastSeq: 40})
	src.failNext = true // the drain after the flight fails
	publishQueued(t, op, 40)
	if op.fastOn.Load() {
		t.Fatal("a failed drain left the fast path on")
	}
	src.commit(40, "sweep-40")
	op.committed(ctx, &flight{lastSeq: 40}) // the sweep: no batch of its own
	op.drain(ctx)                           // the kick
	if !slices.Contains(src.published, "sweep-40") {
		t.Errorf("the sweep's entries were never published; published %v", src.published)
	}
	// Once drained, the floor is memNext's again: batch 40 is not sent a
	// third time.
	src.commit(40, "batch-40-again")
	op.drain(ctx)
	if slices.Contains(src.published, "batch-40-again") {
		t.Errorf("a drain after the sweep's went below memNext again; published %v", src.published)
	}
}
