package consumers

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"stockledger/projections"
)

// The projector's pipeline: what the batch loop asks of it, on the fold
// loop's goroutine. A batch is folded while the one before commits
// (apply); a committed write is landed on one path (drain, land); a
// failure that leaves memory ahead of the store resets it (reset).

// errReset ends a consumer session whose in-memory state can no longer be
// trusted (a write failed for good): the batch loop restarts it at the
// store's checkpoint with an empty cache.
var errReset = errors.New("projector state reset to the store's checkpoint")

// checkpoint returns the store's checkpoint as the fold loop knows it.
func (pr *Projector) checkpoint() uint64 { return pr.commits.ckpt }

// landed is closed when the write in flight has ended.
func (pr *Projector) landed() <-chan struct{} { return pr.commits.landed() }

// apply folds the new messages of a batch on top of what is folded
// (committed or in flight), dead-letters what is refused, then lands the
// write in flight and starts this batch's. An error from the fold left the
// states as they were; any later one resets them (errReset).
func (pr *Projector) apply(ctx context.Context, batch []jetstream.Msg, fresh []delivery, lastSeq uint64) error {
	res, err := pr.folder.fold(ctx, fresh)
	if err != nil {
		return err
	}
	if err := pr.deads.send(ctx, res.deads); err != nil {
		return pr.reset(ctx, err)
	}
	// One write in flight at a time: land the one before.
	if err := pr.drain(ctx, res.changed); err != nil {
		return err
	}
	f := &flight{batch: batch, changed: res.changed, alerts: len(res.alerts), syncs: len(res.sync), lastSeq: lastSeq,
		alertList: res.alerts, syncList: res.sync,
		stats: &BatchStats{Messages: len(batch), Applied: res.applied}}
	if err := pr.commits.launch(ctx, f, res); err != nil {
		return pr.reset(ctx, err)
	}
	return nil
}

// sweep raises ship_late for orders whose promise has passed since the last
// event of their SKU, and commits those changes at the current checkpoint
// (no event: the checkpoint stays where it is), after the write in flight.
// A sweep that cannot load is skipped (Err reports it) and tried again at
// the next tick.
func (pr *Projector) sweep(ctx context.Context) error {
	if err := pr.drain(ctx, nil); err != nil {
		return err
	}
	res, err := pr.folder.sweep(ctx)
	if err != nil {
		pr.health.set(fmt.Errorf("sweep: %w", err))
		return nil
	}
	if len(res.changed) == 0 {
		return nil
	}
	f := &flight{changed: res.changed, alerts: len(res.alerts), alertList: res.alerts, lastSeq: pr.commits.ckpt}
	if err := pr.commits.launch(ctx, f, res); err != nil {
		return fmt.Errorf("sweep: %w", pr.reset(ctx, err))
	}
	if err := pr.drain(ctx, nil); err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	pr.log.Info("ship promises passed", "skus", len(res.changed), "alerts", len(res.alerts))
	return nil
}

// drain waits for the write in flight, if any, and lands it; a write that
// failed for good resets the projector (errReset). keep are the SKUs of the
// batch folded next: the cache keeps them whatever its size.
func (pr *Projector) drain(ctx context.Context, keep []*projections.SKU) error {
	f, err := pr.commits.settle()
	if err != nil {
		return pr.reset(ctx, err)
	}
	if f != nil {
		pr.land(ctx, f, keep)
	}
	return nil
}

// land is the one path a committed write takes: the listeners hear of it
// (the Committed hook, min_seq waiters, views, the alert outbox), closed
// orders leave memory, and its batch is acknowledged, last.
func (pr *Projector) land(ctx context.Context, f *flight, keep []*projections.SKU) {
	if pr.health.recover() {
		pr.log.Info("projector recovered", "checkpoint", f.lastSeq)
	}
	for _, l := range pr.listeners {
		l.committed(ctx, f)
	}
	pr.folder.committed(f.changed, keep)
	if len(f.batch) > 0 {
		pr.loop.ack(f.batch)
	}
}

// reset forgets every cached state and what was folded beyond the store's
// checkpoint, after a failure that leaves memory ahead of the store. It
// waits for a write in flight (its outcome decides the checkpoint) and
// lands it if it committed, then returns errReset wrapping cause: the
// consumer session ends and the next starts at the store's checkpoint.
func (pr *Projector) reset(ctx context.Context, cause error) error {
	if f, err := pr.commits.settle(); err == nil && f != nil {
		pr.land(ctx, f, nil)
	}
	pr.applied.set(pr.commits.rewind(ctx))
	pr.folder.clear()
	pr.health.set(cause)
	return fmt.Errorf("%w: %w", errReset, cause)
}
