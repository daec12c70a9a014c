package consumers

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
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
	// read and the checkpoint of the last one. through is the publisher's
	// published-through sequence, for the messages that carry it.
	flush(ctx context.Context, floor, through uint64) (n int, last uint64, err error)
	// stream and subjects name where the entries go, for lastPublished.
	stream() string
	subjects() string
	// fast reports whether f's entries may be published from memory now
	// (see outboxPublisher); publishFlight sends them, in order, without
	// waiting for the acks.
	fast() bool
	publishFlight(f *flight, through uint64) ([]jetstream.PubAckFuture, error)
}

// outboxPublisher drains one of the store's outboxes onto its stream. The
// store adds each batch's entries to the outbox in the batch's transaction;
// the publisher removes them once the stream has them, so that a crash
// between commit and publish loses none, and each entry carries an
// idempotency key, so that one published twice (a crash between publish
// and delete) is stored once within the stream's duplicate window. It runs
// on a goroutine of its own (start).
//
// The fast path: once a drain of the outbox has found nothing left, each
// committed batch's entries are published from memory as soon as the batch
// commits (committed queues them), in commit order, without reading the
// outbox back; the drain then runs when the queue is empty and every
// outboxEvery, passing over (and deleting) the entries of batches the fast
// path published. A fast
// publish that fails, a full queue, or a source that cannot take the fast
// path now (fast) send the publisher back to draining, which publishes
// every entry not known to be published, in outbox order.
type outboxPublisher struct {
	src outboxSource
	js  jetstream.JetStream
	log *slog.Logger
	// floor: entries of batches whose checkpoint lies below it were
	// published before this process started (skipPublished, skipBelow).
	// Set before start.
	floor uint64
	kick  chan struct{} // one kick pending at most
	// mem queues committed flights for the fast path; lost is set when
	// one did not fit, fastOn while the fast path is taken. Read by the
	// fold loop (committed), written by the publisher.
	mem    chan *flight
	lost   atomic.Bool
	fastOn atomic.Bool
	// memNext: the entries of batches whose checkpoint lies below it were
	// published by the fast path, acknowledged. The publisher's own.
	memNext uint64
	// behind is the lowest checkpoint of a flight committed since the last
	// drain that the fast path did not take (0: none), behindGen counts
	// them. memNext may have passed such a flight's entries, still in the
	// outbox: a batch committed while a drain switched to the fast path
	// (its kick served after the next batch's flight), or a sweep, which
	// carries the checkpoint of the batch before it. The drain's floor
	// goes down to behind until a drain that saw it empties the outbox.
	// Written by the fold loop (committed), read and cleared by the
	// publisher.
	behindMu  sync.Mutex
	behind    uint64
	behindGen uint64
	// through: the entries of every batch whose checkpoint is at or below
	// it were published, acknowledged, by this process or (skipPublished)
	// an earlier one; always a batch's checkpoint, so that it also bounds
	// the events whose entries were published. The publisher's own; sent
	// on every alert message (transport.HeaderPublishedThrough).
	through uint64
}

// outboxMemMax bounds the flights queued for the fast path.
const outboxMemMax = 256

func newOutboxPublisher(src outboxSource, js jetstream.JetStream, log *slog.Logger) *outboxPublisher {
	return &outboxPublisher{src: src, js: js, log: log, kick: make(chan struct{}, 1), mem: make(chan *flight, outboxMemMax)}
}

// committed queues f for the fast path when it wrote to the outbox, and
// kicks a drain when the fast path is not taken, noting f's checkpoint for
// it (behind).
func (op *outboxPublisher) committed(_ context.Context, f *flight) {
	if !op.src.wanted(f) {
		return
	}
	if op.fastOn.Load() {
		select {
		// Only what the fast path publishes: a flight also holds its
		// batch's messages, which the queue must not keep alive.
		case op.mem <- &flight{alertList: f.alertList, syncList: f.syncList, lastSeq: f.lastSeq}:
			return
		default:
			op.lost.Store(true)
		}
	}
	op.behindMu.Lock()
	if op.behind == 0 || f.lastSeq < op.behind {
		op.behind = max(f.lastSeq, 1)
	}
	op.behindGen++
	op.behindMu.Unlock()
	op.kickNow()
}

// drainFloor returns the checkpoint below which the drain passes over the
// outbox's entries (published before this process started, or by the fast
// path), lowered to the flights the fast path did not take, and the count
// of those flights it saw.
func (op *outboxPublisher) drainFloor() (floor, gen uint64) {
	op.behindMu.Lock()
	defer op.behindMu.Unlock()
	mem := op.memNext
	if op.behind > 0 {
		mem = min(mem, op.behind)
	}
	return max(op.floor, mem), op.behindGen
}

// drained forgets the flights the fast path did not take once a drain that
// saw them all has emptied the outbox; one committed meanwhile is kept for
// the next drain.
func (op *outboxPublisher) drained(gen uint64) {
	op.behindMu.Lock()
	defer op.behindMu.Unlock()
	if op.behindGen == gen {
		op.behind = 0
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

// run drains the outbox at start, every outboxEvery and when kicked, and
// publishes queued flights on the fast path, until ctx ends.
func (op *outboxPublisher) run(ctx context.Context) {
	tick := time.NewTicker(outboxEvery)
	defer tick.Stop()
	op.drain(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-op.mem:
			op.publishFast(ctx, f)
		case <-op.kick:
			op.drain(ctx)
		case <-tick.C:
			op.drain(ctx)
		}
	}
}

// drain publishes what the outbox holds that is not known to be published,
// oldest first, until it is empty; then the fast path is taken if the
// source allows it.
func (op *outboxPublisher) drain(ctx context.Context) {
	var last uint64
	floor, gen := op.drainFloor()
	for {
		n, l, err := op.src.flush(ctx, floor, op.through)
		if err != nil {
			if ctx.Err() == nil {
				op.log.Warn(op.src.name()+" publish failed; will retry", "err", err)
			}
			op.fastOn.Store(false)
			return
		}
		if n > 0 {
			last = l
		}
		if n < outboxBatchMax {
			break
		}
	}
	// The outbox held nothing more: every entry committed so far, up to
	// the last one read, is on the stream.
	op.through = max(op.through, last)
	op.drained(gen)
	op.fastOn.Store(op.src.fast())
}

// publishFast publishes a queued flight's entries together with those of
// the flights queued behind it (up to outboxMemMax), and waits for all
// their acks at once: under sync-always each ack waits for a disk write,
// and flights committed meanwhile share it. It falls back to a drain when
// the fast path was left (a flight lost to a full queue) or a publish
// fails.
func (op *outboxPublisher) publishFast(ctx context.Context, f *flight) {
	flights := []*flight{f}
	for len(flights) < outboxMemMax {
		select {
		case next := <-op.mem:
			flights = append(flights, next)
			continue
		default:
		}
		break
	}
	if op.lost.Swap(false) || !op.fastOn.Load() {
		op.fastOn.Store(false)
		op.drain(ctx)
		return
	}
	var futures []jetstream.PubAckFuture
	var err error
	for _, f := range flights {
		if f.lastSeq < op.floor {
			continue // a rebuild's batch, published before this process started
		}
		var fs []jetstream.PubAckFuture
		if fs, err = op.src.publishFlight(f, op.through); err != nil {
			break
		}
		futures = append(futures, fs...)
	}
	if err == nil {
		err = awaitAcks(ctx, futures)
	}
	if err != nil {
		if ctx.Err() == nil {
			op.log.Warn(op.src.name()+" publish failed; draining the outbox", "err", err)
		}
		// A sweep's flight carries the checkpoint of the batch before it:
		// the drain must not pass over the failed flights' checkpoints.
		op.memNext = min(op.memNext, flights[0].lastSeq)
		op.fastOn.Store(false)
		op.drain(ctx)
		return
	}
	op.memNext = max(op.memNext, flights[len(flights)-1].lastSeq+1)
	op.through = max(op.through, flights[len(flights)-1].lastSeq)
	// Nothing queued behind: delete what was published now (the drain
	// passes over it), so that the outbox holds only what is in flight.
	if len(op.mem) == 0 {
		op.drain(ctx)
	}
}

// skipPublished sets the floor for a store rebuilt from the event stream at
// start from the last message on the stream (none: 0): past its
// published-through sequence S, since the entries of every event up to S
// were published before, and a rebuilt batch ending at or below S holds
// only such events. Not its own checkpoint: the process that sent it may
// have been stopped halfway through that batch's entries, and the rebuild's
// batches end elsewhere. A message from before the header carries only its
// checkpoint, which is taken as before.
func (op *outboxPublisher) skipPublished(ctx context.Context) {
	op.floor = 0
	m, err := transport.LastMsgFromLeader(ctx, op.js.Conn(), op.src.stream(), op.src.subjects())
	if err != nil || m == nil {
		return
	}
	if v := m.Header.Get(transport.HeaderPublishedThrough); v != "" {
		through, err := strconv.ParseUint(v, 10, 64)
		if err == nil {
			op.floor, op.through = through+1, through
		}
		return
	}
	op.floor, _ = strconv.ParseUint(m.Header.Get(transport.HeaderCheckpoint), 10, 64)
}

// skipBelow sets the floor to seq: the entries of batches below it were
// published before (a read model rebuilt from sequence 1 under a consumer
// that had acknowledged up to seq−1).
func (op *outboxPublisher) skipBelow(seq uint64) {
	op.floor = max(op.floor, seq)
	op.through = max(op.through, seq-1)
}

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
