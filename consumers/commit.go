package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"stockledger/projections"
)

// commitTimeout bounds one attempt of a store write; shutdown does not cut
// it short.
const commitTimeout = 30 * time.Second

// flight is a batch folded and staged whose write runs in the background
// while the next batch is folded.
type flight struct {
	batch   []jetstream.Msg // nil for a sweep
	changed []*projections.SKU
	views   [][]byte // JSON of changed[i]'s view, as committed
	alerts  int
	syncs   int // sync instructions
	// alertList and syncList are the batch's alert changes and sync
	// instructions, for the outboxes' fast path (outboxPublisher).
	alertList []projections.Alert
	syncList  []projections.SyncInstruction
	lastSeq   uint64
	stats     *BatchStats // nil for a sweep
	// took (the write's own time, retries included) and err (its outcome)
	// are set before done is closed.
	took time.Duration
	err  error
	done chan struct{}
}

// committer writes folded batches to the store, exactly one write in
// flight: the fold loop folds batch N+1 while batch N commits. It holds the
// store's checkpoint as far as the fold loop knows it; the store's guard
// (Batch.PrevSeq) refuses a write folded on any other. The fold loop owns
// it.
type committer struct {
	store  projections.Writer
	name   string // the checkpoint's name (Options.Name)
	log    *slog.Logger
	health *health
	// ckpt is the store's checkpoint: the last batch committed.
	ckpt     uint64
	inflight *flight
}

// launch stages f's batch (views worked out and encoded once; the alerts,
// shops and sync instructions of res), clears the
// dirty marks it captured and starts its write. Caller has landed the write
// before (one in flight at a time). An error means nothing was started, and
// the states f changed are ahead of the store.
func (c *committer) launch(ctx context.Context, f *flight, res foldResult) error {
	views := make([]projections.View, len(f.changed))
	f.views = make([][]byte, len(f.changed))
	for i, s := range f.changed {
		views[i] = s.View()
		data, err := json.Marshal(views[i])
		if err != nil {
			return fmt.Errorf("encode view %s/%s: %w", s.Shop, s.SKU, err)
		}
		f.views[i] = data
	}
	write, err := c.store.Stage(&projections.Batch{Projector: c.name, PrevSeq: c.ckpt, LastSeq: f.lastSeq,
		SKUs: f.changed, Views: views, Alerts: res.alerts, Shops: res.shops, Sync: res.sync})
	if err != nil {
		return err
	}
	for _, s := range f.changed {
		s.ClearDirty()
	}
	f.done = make(chan struct{})
	c.inflight = f
	go c.write(ctx, f, write, c.ckpt+1)
	return nil
}

// write runs f's staged write, retrying failures other than a moved
// checkpoint until it succeeds or ctx ends, then closes f.done. first is
// the batch's first stream sequence, for errors.
func (c *committer) write(ctx context.Context, f *flight, write projections.CommitFunc, first uint64) {
	defer close(f.done)
	began := time.Now()
	wait := retryWaitMin
	for {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
		err := write(cctx)
		cancel()
		if err == nil || errors.Is(err, projections.ErrCheckpointMoved) {
			f.took, f.err = time.Since(began), err
			return
		}
		err = fmt.Errorf("commit seq %d..%d: %w", first, f.lastSeq, err)
		c.health.set(err)
		c.log.Warn("batch not committed; retrying", "err", err, "wait", wait)
		if !sleep(ctx, wait) {
			f.err = err
			return
		}
		wait = min(2*wait, retryWaitMax)
	}
}

// landed is closed when the write in flight has ended; nil (never ready)
// when none is in flight.
func (c *committer) landed() <-chan struct{} {
	if c.inflight == nil {
		return nil
	}
	return c.inflight.done
}

// settle waits for the write in flight to end and returns it once
// committed, the checkpoint moved to its last sequence; or the write's
// error, the checkpoint where it was. It returns nil and no error when no
// write is in flight.
func (c *committer) settle() (*flight, error) {
	f := c.inflight
	if f == nil {
		return nil, nil
	}
	c.inflight = nil
	<-f.done
	if f.err != nil {
		return nil, f.err
	}
	c.ckpt = f.lastSeq
	return f, nil
}

// rewind sets the checkpoint to the store's, after a failure that leaves
// the fold loop unsure of it (a write that failed for good, or was refused
// because another projector moved the checkpoint), and returns it. When the
// store cannot be read the checkpoint stays as it was: the next write's
// guard finds out. Caller has no write in flight.
func (c *committer) rewind(ctx context.Context) uint64 {
	ckpt, err := c.store.Checkpoint(ctx, c.name)
	if err != nil {
		return c.ckpt
	}
	if ckpt != c.ckpt {
		c.log.Warn("store checkpoint differs from the projector's; folding again from the store's", "store", ckpt, "projector", c.ckpt)
	}
	c.ckpt = ckpt
	return ckpt
}
