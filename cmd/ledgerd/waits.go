package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Read wait bounds.
const (
	// readWaitMax bounds how long one read waits for the projection, for
	// the start gate and min_seq together. Past it the read answers 503
	// with Retry-After while the read model is still being rebuilt at
	// start, or 504 when min_seq was not reached.
	readWaitMax = 5 * time.Second
	// startRetryAfter is the Retry-After of a read refused while the read
	// model is being rebuilt: it already waited readWaitMax.
	startRetryAfter = time.Second
)

// startGate holds reads back while the read model is rebuilt at start. A
// memory read model starts empty and folds the event stream from sequence
// 1 while HTTP already serves; answered at once, a reader that saw a state
// before a restart would see an older one after it. So until the
// projection has applied the event stream as far as it went at start
// (target), no read is answered: no state older than one served before the
// restart is ever served. A read model that persists (Postgres) resumes
// from its checkpoint, never goes back, and has no target: the gate is
// open from the start; unless it starts empty (new, or emptied by a
// migration that rebuilds it), when it waits as a memory read model does.
// Safe for concurrent use.
type startGate struct {
	progress progress
	target   uint64
	open     atomic.Bool
}

func newStartGate(p progress, target uint64) *startGate {
	g := &startGate{progress: p, target: target}
	g.open.Store(target == 0)
	return g
}

// starting reports whether reads are still held back, and the target.
func (g *startGate) starting() (bool, uint64) {
	if g.open.Load() {
		return false, 0
	}
	if g.progress.Applied() >= g.target {
		g.open.Store(true)
		return false, 0
	}
	return true, g.target
}

// wait waits until the gate is open or ctx ends; then it returns a 503
// with Retry-After naming the progress.
func (g *startGate) wait(ctx context.Context) error {
	if starting, _ := g.starting(); !starting {
		return nil
	}
	if err := g.progress.WaitApplied(ctx, g.target); err != nil {
		return &httpError{status: http.StatusServiceUnavailable, title: "Read model starting", retryAfter: startRetryAfter, cause: err,
			detail: fmt.Sprintf("the read model is being rebuilt from the event stream: it has applied seq %d of the %d the stream held at start, and answers nothing older (ask again)",
				g.progress.Applied(), g.target)}
	}
	g.open.Store(true)
	return nil
}

// readWait is what a read waits for before it reads: the start gate, and
// min_seq where the read honours it.
type readWait struct {
	gate     *startGate
	progress progress
}

// await waits, within readWaitMax in all, for the start gate and then, if
// minSeq, for the min_seq of the request (read-your-writes). A bad min_seq
// is refused before any wait.
func (rw *readWait) await(r *http.Request, minSeq bool) error {
	var seq uint64
	if raw := r.URL.Query().Get("min_seq"); minSeq && raw != "" {
		n, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			return badParam("min_seq", raw, "must be a whole number ≥ 0")
		}
		seq = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), readWaitMax)
	defer cancel()
	if err := rw.gate.wait(ctx); err != nil {
		return err
	}
	if seq == 0 {
		return nil
	}
	if err := rw.progress.WaitApplied(ctx, seq); err != nil {
		return &httpError{status: http.StatusGatewayTimeout, title: "Projection behind", cause: err,
			detail: fmt.Sprintf("min_seq %d: the projection has applied seq %d and did not reach it within %s", seq, rw.progress.Applied(), readWaitMax)}
	}
	return nil
}
