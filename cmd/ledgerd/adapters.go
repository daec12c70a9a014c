package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/consumers"
	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// The interfaces of ports.go, implemented over NATS, the projector and the
// read model.

// catalogAppender appends with the publisher's command path, the
// projection answering the listing rule's questions.
type catalogAppender struct {
	pub     *transport.Publisher
	catalog transport.Catalog
}

// Append appends events with the listing rule checked against the catalog.
func (a catalogAppender) Append(ctx context.Context, events []ledger.Event) ([]transport.Ack, error) {
	return a.pub.Append(ctx, a.catalog, events)
}

// streamHistory reads a SKU's history from the event stream and folds it
// for as_of reads.
type streamHistory struct {
	*transport.History
	fold projections.FoldConfig
}

// AsOf folds the SKU's history up to asOf (consumers.FoldAsOf).
func (h streamHistory) AsOf(ctx context.Context, shop, sku string, asOf time.Time) (*projections.SKU, error) {
	return consumers.FoldAsOf(ctx, h.History, shop, sku, asOf, h.fold)
}

// liveAlertPullMax bounds the alert messages one live client's consumer
// pulls ahead of the client; the client's queue (liveBufferMax) holds them
// next.
const liveAlertPullMax = 256

// jetstreamLive is the live feed's source: an ordered consumer of the alert
// stream per client and a watch of the view bucket.
type jetstreamLive struct {
	js jetstream.JetStream
	kv jetstream.KeyValue
}

// AlertLastSeq returns the alert stream's last sequence.
func (l jetstreamLive) AlertLastSeq(ctx context.Context) (uint64, error) {
	st, err := l.js.Stream(ctx, transport.AlertStream)
	if err != nil {
		return 0, fmt.Errorf("alert stream: %w", err)
	}
	return st.CachedInfo().State.LastSeq, nil
}

// FollowAlerts opens an ordered consumer of the shop's alert subjects
// from stream sequence from.
func (l jetstreamLive) FollowAlerts(ctx context.Context, shop string, from uint64) (alertFeed, error) {
	cons, err := l.js.OrderedConsumer(ctx, transport.AlertStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{transport.AlertSubject(shop, ">")},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
	if err != nil {
		return nil, fmt.Errorf("alert feed: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(liveAlertPullMax))
	if err != nil {
		return nil, fmt.Errorf("alert feed: %w", err)
	}
	return alertMessages{it}, nil
}

type alertMessages struct{ it jetstream.MessagesContext }

// Next returns the next alert change and its stream sequence.
func (a alertMessages) Next() (alertChange, error) {
	m, err := a.it.Next()
	if err != nil {
		return alertChange{}, err
	}
	meta, err := m.Metadata()
	if err != nil {
		return alertChange{}, err
	}
	return alertChange{seq: meta.Sequence.Stream, data: m.Data()}, nil
}

// Stop ends the consumer's pull.
func (a alertMessages) Stop() { a.it.Stop() }

// WatchViews watches the shop's keys of the view bucket.
func (l jetstreamLive) WatchViews(ctx context.Context, shop string) (viewFeed, error) {
	w, err := l.kv.Watch(ctx, shop+".*")
	if err != nil {
		return nil, fmt.Errorf("view bucket: %w", err)
	}
	return viewWatch{w}, nil
}

type viewWatch struct{ w jetstream.KeyWatcher }

// errWatchClosed is the end of a view watch the server closed.
var errWatchClosed = errors.New("view watcher closed")

// Next returns the next put view, or the ready mark the watcher sends
// after the current values; deletes are skipped.
func (v viewWatch) Next(ctx context.Context) (viewChange, error) {
	for {
		select {
		case <-ctx.Done():
			return viewChange{}, ctx.Err()
		case e, ok := <-v.w.Updates():
			if !ok {
				return viewChange{}, errWatchClosed
			}
			if e == nil {
				return viewChange{ready: true}, nil
			}
			if e.Operation() == jetstream.KeyValuePut {
				return viewChange{data: e.Value()}, nil
			}
		}
	}
}

// Stop ends the watch.
func (v viewWatch) Stop() { _ = v.w.Stop() }

// natsProbe tells /healthz about the NATS connection and the event stream.
type natsProbe struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// errDisconnected is the probe's answer while NATS is not connected.
var errDisconnected = errors.New("disconnected")

// EventLastSeq returns the event stream's last sequence, errDisconnected
// while NATS is not connected.
func (p natsProbe) EventLastSeq(ctx context.Context) (uint64, error) {
	if !p.nc.IsConnected() {
		return 0, errDisconnected
	}
	st, err := p.js.Stream(ctx, transport.EventStream)
	if err != nil {
		return 0, fmt.Errorf("stream: %w", err)
	}
	return st.CachedInfo().State.LastSeq, nil
}
