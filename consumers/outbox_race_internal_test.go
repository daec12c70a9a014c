package consumers

import (
	"context"
	"slices"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// fakeOutbox is an outbox source that records what it publishes, without a
// store or a stream. Its entries are batch checkpoints, one entry each.
// duringFlush, when set, runs once inside the next flush, after its read:
// a batch committing while the drain works.
type fakeOutbox struct {
	pending     []uint64
	published   []uint64
	duringFlush func()
}

func (fo *fakeOutbox) name() string         { return "fake" }
func (fo *fakeOutbox) wanted(*flight) bool  { return true }
func (fo *fakeOutbox) stream() string       { return "" }
func (fo *fakeOutbox) subjects() string     { return "" }
func (fo *fakeOutbox) fast() bool           { return true }
func (fo *fakeOutbox) commit(ckpt uint64)   { fo.pending = append(fo.pending, ckpt) }
func (fo *fakeOutbox) has(ckpt uint64) bool { return slices.Contains(fo.published, ckpt) }
func (fo *fakeOutbox) sent() []uint64       { return fo.published }
func (fo *fakeOutbox) publishFlight(f *flight, _ uint64) ([]jetstream.PubAckFuture, error) {
	fo.published = append(fo.published, f.lastSeq)
	return nil, nil
}

func (fo *fakeOutbox) flush(_ context.Context, floor, _ uint64) (int, uint64, error) {
	read := slices.Clone(fo.pending)
	fo.pending = fo.pending[:0]
	if f := fo.duringFlush; f != nil {
		fo.duringFlush = nil
		f()
	}
	for _, c := range read {
		if c >= floor {
			fo.published = append(fo.published, c)
		}
	}
	var last uint64
	if len(read) > 0 {
		last = read[len(read)-1]
	}
	return len(read), last, nil
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
	src.commit(10)
	// Batch 20 commits while the drain's read of the outbox is done: the
	// fast path is not taken yet, so committed only kicks.
	src.duringFlush = func() {
		src.commit(20)
		op.committed(ctx, &flight{lastSeq: 20})
	}
	op.drain(ctx)
	if !op.fastOn.Load() {
		t.Fatal("the drain emptied the outbox and did not take the fast path")
	}
	// Batch 30 comes as a flight; the publisher takes it before the kick.
	src.commit(30)
	op.committed(ctx, &flight{lastSeq: 30})
	select {
	case f := <-op.mem:
		op.publishFast(ctx, f)
	default:
		t.Fatal("batch 30 was not queued for the fast path")
	}
	for _, c := range []uint64{10, 20, 30} {
		if !src.has(c) {
			t.Errorf("batch %d's entries were never published; published %v", c, src.sent())
		}
	}
}
