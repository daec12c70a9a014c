package consumers

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// appliedSeq is the last stream sequence committed to the store, and the
// wait for it (WaitApplied, the API's min_seq). Safe for concurrent use.
type appliedSeq struct {
	seq     atomic.Uint64
	mu      sync.Mutex
	advance chan struct{} // closed and replaced at every commit
}

func newAppliedSeq() *appliedSeq {
	return &appliedSeq{advance: make(chan struct{})}
}

// load returns the last stream sequence committed.
func (a *appliedSeq) load() uint64 { return a.seq.Load() }

// set moves the sequence without waking waiters: at start, and when a
// reset goes back to the store's checkpoint.
func (a *appliedSeq) set(seq uint64) { a.seq.Store(seq) }

// committed tells waiters that f's last sequence is committed.
func (a *appliedSeq) committed(_ context.Context, f *flight) {
	a.seq.Store(f.lastSeq)
	a.mu.Lock()
	close(a.advance)
	a.advance = make(chan struct{})
	a.mu.Unlock()
}

// wait returns once seq is committed, or ctx's error when it ends first.
func (a *appliedSeq) wait(ctx context.Context, seq uint64) error {
	for {
		a.mu.Lock()
		ch := a.advance
		a.mu.Unlock()
		if a.seq.Load() >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for seq %d (applied %d): %w", seq, a.seq.Load(), ctx.Err())
		}
	}
}

// health is the error of the last failure while the projector cannot go on
// (a batch not folded or not committed, a sweep that failed, a consumer
// restarting), nil once a batch commits. Safe for concurrent use.
type health struct {
	mu      sync.Mutex
	err     error
	failing atomic.Bool
}

// set records err; nil means healthy.
func (h *health) set(err error) {
	h.mu.Lock()
	h.err = err
	h.mu.Unlock()
	h.failing.Store(err != nil)
}

// get returns the last error recorded, nil when healthy.
func (h *health) get() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// recover clears the error after a commit and reports whether there was
// one to clear.
func (h *health) recover() bool {
	if !h.failing.Load() {
		return false
	}
	h.set(nil)
	return true
}
