package main

import (
	"context"
	"time"

	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// The HTTP layer's view of the rest of ledgerd: each handler gets only the
// interfaces below that it uses, and service.go wires them to NATS, the
// projector and the read model (adapters.go). No handler holds a NATS
// connection or opens a JetStream consumer itself.

// appender appends a batch of events to the event stream: the command path
// (transport.Publisher.Append with the projection as its catalog). It
// returns the acks of what it stored, also with an error.
type appender interface {
	Append(ctx context.Context, events []ledger.Event) ([]transport.Ack, error)
}

// progress is how far the projection has applied the event stream.
type progress interface {
	// Applied returns a sequence at or below which every event is
	// applied in the read model.
	Applied() uint64
	// WaitApplied waits until Applied reaches seq, or ctx ends (its error
	// returned).
	WaitApplied(ctx context.Context, seq uint64) error
}

// model is the read model as the read handlers see it. Every answer comes
// with the applied sequence read before the store read: every event at or
// below it is reflected in the answer (see headerApplied).
type model interface {
	// SKU returns one SKU's view; projections.ErrNotFound when no event
	// named it.
	SKU(ctx context.Context, shop, sku string) (projections.View, uint64, error)
	// SKUs returns a shop's SKU views ordered by sku.
	SKUs(ctx context.Context, shop string) ([]projections.View, uint64, error)
	// Alerts returns alerts ordered by exposure, largest first.
	Alerts(ctx context.Context, f projections.AlertFilter) ([]projections.Alert, uint64, error)
	// ShopHealth returns a shop's totals, lines due counted against now;
	// projections.ErrNotFound when no event named the shop.
	ShopHealth(ctx context.Context, shop string, now time.Time) (projections.ShopHealth, uint64, error)
}

// history reads one SKU's events from the event stream.
type history interface {
	// Read returns the SKU's events after stream sequence afterSeq, at most
	// limit, and whether there are more; transport.ErrNoEvents when the
	// stream holds none.
	Read(ctx context.Context, shop, sku string, afterSeq uint64, limit int) ([]transport.StoredEvent, bool, error)
	// Refusals returns why the projector refused events of the SKU, by
	// stream sequence.
	Refusals(ctx context.Context, shop, sku string) (map[uint64]string, error)
	// AsOf folds the SKU's history up to asOf; nil when no event of it
	// happened by then; an error wrapping transport.ErrHistoryTooLong when
	// the history is too long to fold on a request.
	AsOf(ctx context.Context, shop, sku string, asOf time.Time) (*projections.SKU, error)
}

// liveSource is what the live feed follows: the alert stream from a
// position, and the view bucket.
type liveSource interface {
	// AlertLastSeq returns the alert stream's last sequence.
	AlertLastSeq(ctx context.Context) (uint64, error)
	// FollowAlerts returns the shop's alert changes from stream sequence
	// from on, in stream order.
	FollowAlerts(ctx context.Context, shop string, from uint64) (alertFeed, error)
	// WatchViews returns the shop's SKU views: every current one, then a
	// ready mark, then each change as it is written.
	WatchViews(ctx context.Context, shop string) (viewFeed, error)
}

// alertFeed is one client's subscription to alert changes.
type alertFeed interface {
	// Next blocks until the next alert change; it returns an error once
	// Stop was called or the feed failed.
	Next() (alertChange, error)
	// Stop ends the feed.
	Stop()
}

// alertChange is one message of the alert stream.
type alertChange struct {
	seq  uint64
	data []byte
}

// viewFeed is one client's watch of SKU views.
type viewFeed interface {
	// Next blocks until the next view or the ready mark; it returns an
	// error when ctx ends or the watch closed.
	Next(ctx context.Context) (viewChange, error)
	// Stop ends the watch.
	Stop()
}

// viewChange is one view as the bucket holds it (its JSON), or, with
// ready set, the mark that every current view came before it.
type viewChange struct {
	data  []byte
	ready bool
}

// projectionState is what /healthz and the metrics tell of the projector.
type projectionState interface {
	Applied() uint64
	Err() error
	DeadLettered() uint64
}

// streamProbe tells /healthz whether NATS answers and how far the event
// stream goes.
type streamProbe interface {
	// EventLastSeq returns the event stream's last sequence; the error says
	// what is wrong with NATS or the stream.
	EventLastSeq(ctx context.Context) (uint64, error)
}

// pinger tells /healthz whether the read model answers.
type pinger interface {
	Ping(ctx context.Context) error
}
