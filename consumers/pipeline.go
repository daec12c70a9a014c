package consumers

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"stockledger/projections"
)

// errReset ends a consumer session whose in-memory state can no longer be
// trusted (a write failed for good): Run restarts it at the store's
// checkpoint with an empty cache.
var errReset = errors.New("projector state reset to the store's checkpoint")

// drain waits for the write in flight, if any, and lands it; a write that
// failed for good resets the projector (errReset). keep are the SKUs of the
// batch folded next: the cache keeps them whatever its size.
func (p *Projector) drain(ctx context.Context, keep []*projections.SKU) error {
	f, err := p.commits.settle()
	if err != nil {
		return p.reset(ctx, err)
	}
	if f != nil {
		p.land(ctx, f, keep)
	}
	return nil
}

// land is the one path a committed write takes: the listeners hear of it
// (the Committed hook, min_seq waiters, views, the alert outbox), closed
// orders leave memory, and its batch is acknowledged, last.
func (p *Projector) land(ctx context.Context, f *flight, keep []*projections.SKU) {
	if p.health.recover() {
		p.log.Info("projector recovered", "checkpoint", f.lastSeq)
	}
	for _, l := range p.listeners {
		l.committed(ctx, f)
	}
	p.folder.committed(f.changed, keep)
	if len(f.batch) > 0 {
		p.ack(f.batch)
	}
}

// reset forgets every cached state and what was folded beyond the store's
// checkpoint, after a failure that leaves memory ahead of the store. It
// waits for a write in flight (its outcome decides the checkpoint) and
// lands it if it committed, then returns errReset wrapping cause: the
// consumer session ends and Run starts another at the checkpoint.
func (p *Projector) reset(ctx context.Context, cause error) error {
	if f, err := p.commits.settle(); err == nil && f != nil {
		p.land(ctx, f, nil)
	}
	p.applied.set(p.commits.rewind(ctx))
	p.folded = p.commits.ckpt
	p.folder.clear()
	p.health.set(cause)
	return fmt.Errorf("%w: %w", errReset, cause)
}

// commitSweep writes the changes of a ship-promise sweep (no event: the
// checkpoint stays where it is) and waits for them to land.
func (p *Projector) commitSweep(ctx context.Context, changed []*projections.SKU, alerts []projections.Alert) error {
	f := &flight{changed: changed, alerts: len(alerts), lastSeq: p.commits.ckpt}
	if err := p.commits.launch(ctx, f, alerts); err != nil {
		return p.reset(ctx, err)
	}
	return p.drain(ctx, nil)
}

// ack acknowledges a batch. AckAll: acknowledging the last message
// acknowledges the batch. A lost ack only means a redelivery, which the
// checkpoint skips.
func (p *Projector) ack(batch []jetstream.Msg) {
	if err := batch[len(batch)-1].Ack(); err != nil {
		p.log.Warn("ack failed; the batch will be redelivered and skipped", "err", err)
	}
}
