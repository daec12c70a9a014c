package consumers

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger/transport"
	"stockledger/projections"
)

const (
	// kvPendingMax bounds the SKUs whose view waits to be written to the
	// view bucket while the projector catches up; past it they are written
	// at once.
	kvPendingMax = 20_000
	// kvWriteTimeout bounds the wait for the bucket's acks of one flush;
	// keys not acknowledged stay pending and are written with the next one.
	kvWriteTimeout = 10 * time.Second
)

// viewFloor reads the stream's last sequence at start: while the projector is
// below it (a rebuild or a catch-up) views are not written to the bucket one
// batch at a time, which would replay old states to watchers; they are
// written once, when the projector reaches it.
func (p *Projector) viewFloor(ctx context.Context) uint64 {
	st, err := p.js.Stream(ctx, transport.EventStream)
	if err != nil {
		return 0
	}
	return st.CachedInfo().State.LastSeq
}

// writeViews keeps the changed SKUs' views (views[i], JSON, as committed)
// for the bucket and, once the projector has caught up, writes every view
// kept. Caller is the projector's goroutine, after the store committed.
func (p *Projector) writeViews(ctx context.Context, changed []*projections.SKU, views [][]byte) {
	if p.o.ViewBucket == "" {
		return
	}
	for i, s := range changed {
		p.kvPending[projections.SKUKey{Shop: s.Shop, SKU: s.SKU}] = views[i]
	}
	if p.ckpt < p.kvFloor && len(p.kvPending) < kvPendingMax {
		return
	}
	if p.kvFloor > 0 && p.ckpt >= p.kvFloor {
		p.log.Info("caught up: writing views to the bucket", "bucket", p.o.ViewBucket, "skus", len(p.kvPending), "checkpoint", p.ckpt)
		p.kvFloor = 0
	}
	if err := p.flushViews(ctx); err != nil {
		p.log.Warn("view bucket write failed; will retry with the next batch", "bucket", p.o.ViewBucket, "pending", len(p.kvPending), "err", err)
	}
}

// flushViews publishes every pending view on its key's subject and waits for
// the acks; keys acknowledged leave the pending set.
func (p *Projector) flushViews(ctx context.Context) error {
	type put struct {
		k projections.SKUKey
		f jetstream.PubAckFuture
	}
	puts := make([]put, 0, len(p.kvPending))
	var firstErr error
	for k, data := range p.kvPending {
		f, err := p.js.PublishMsgAsync(&nats.Msg{Subject: transport.ViewKVSubject(k.Shop, k.SKU), Data: data})
		if err != nil {
			firstErr = fmt.Errorf("put view %s/%s: %w", k.Shop, k.SKU, err)
			break
		}
		puts = append(puts, put{k, f})
	}
	timeout := time.NewTimer(kvWriteTimeout)
	defer timeout.Stop()
	for _, pt := range puts {
		select {
		case <-pt.f.Ok():
			delete(p.kvPending, pt.k)
		case err := <-pt.f.Err():
			if firstErr == nil {
				firstErr = fmt.Errorf("put view %s/%s: %w", pt.k.Shop, pt.k.SKU, err)
			}
		case <-timeout.C:
			return fmt.Errorf("view bucket did not acknowledge within %s", kvWriteTimeout)
		}
	}
	return firstErr
}
