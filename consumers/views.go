package consumers

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger/transport"
	"stockledger/projections"
)

// View bucket bounds.
const (
	// kvPendingMax bounds the SKUs whose view waits to be written to the
	// view bucket while the projector catches up; past it they are written
	// at once.
	kvPendingMax = 20_000
	// kvWriteTimeout bounds the wait for the bucket's acks of one flush;
	// keys not acknowledged stay pending and are written with the next one.
	kvWriteTimeout = 10 * time.Second
)

// viewSubjects publishes each committed SKU's view on its view subject
// (transport.ViewSubject). Core NATS: a dashboard that missed one reads the
// current view over HTTP.
type viewSubjects struct {
	nc  *nats.Conn
	log *slog.Logger
}

// committed publishes the views of the SKUs f changed, as committed.
func (vs viewSubjects) committed(_ context.Context, f *flight) {
	for i, s := range f.changed {
		if err := vs.nc.Publish(transport.ViewSubject(s.Shop, s.SKU), f.views[i]); err != nil {
			vs.log.Warn("publish view", "shop", s.Shop, "sku", s.SKU, "err", err)
			return
		}
	}
}

// viewBucket writes each committed SKU's view to the view bucket
// (Options.ViewBucket), whose watchers see every write. While the projector
// is behind the stream's last sequence at start (a rebuild or a catch-up),
// views are kept and written once, when it gets there, so that watchers are
// not replayed old states. The fold loop owns it.
type viewBucket struct {
	js   jetstream.JetStream
	name string
	log  *slog.Logger
	// floor is the stream's last sequence at start (see start), 0 once the
	// projector got there.
	floor   uint64
	pending map[projections.SKUKey][]byte
}

func newViewBucket(js jetstream.JetStream, name string, log *slog.Logger) *viewBucket {
	return &viewBucket{js: js, name: name, log: log, pending: make(map[projections.SKUKey][]byte)}
}

// start reads the stream's last sequence: the floor below which views are
// kept rather than written one batch at a time.
func (vb *viewBucket) start(ctx context.Context) {
	st, err := vb.js.Stream(ctx, transport.EventStream)
	if err != nil {
		vb.floor = 0
		return
	}
	vb.floor = st.CachedInfo().State.LastSeq
}

// committed keeps the views of the SKUs f changed (JSON, as committed) and,
// once the projector has caught up, writes every view kept.
func (vb *viewBucket) committed(ctx context.Context, f *flight) {
	for i, s := range f.changed {
		vb.pending[projections.SKUKey{Shop: s.Shop, SKU: s.SKU}] = f.views[i]
	}
	ckpt := f.lastSeq
	if ckpt < vb.floor && len(vb.pending) < kvPendingMax {
		return
	}
	if vb.floor > 0 && ckpt >= vb.floor {
		vb.log.Info("caught up: writing views to the bucket", "bucket", vb.name, "skus", len(vb.pending), "checkpoint", ckpt)
		vb.floor = 0
	}
	if err := vb.flush(ctx); err != nil {
		vb.log.Warn("view bucket write failed; will retry with the next batch", "bucket", vb.name, "pending", len(vb.pending), "err", err)
	}
}

// flush publishes every pending view on its key's subject and waits for
// the acks; keys acknowledged leave the pending set.
func (vb *viewBucket) flush(ctx context.Context) error {
	type put struct {
		k projections.SKUKey
		f jetstream.PubAckFuture
	}
	puts := make([]put, 0, len(vb.pending))
	var firstErr error
	for k, data := range vb.pending {
		f, err := vb.js.PublishMsgAsync(&nats.Msg{Subject: transport.ViewKVSubject(k.Shop, k.SKU), Data: data})
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
			delete(vb.pending, pt.k)
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
