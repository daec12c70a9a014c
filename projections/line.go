package projections

import (
	"slices"
	"time"

	"stockledger/ledger"
)

// Line is one order line: one SKU of one platform order, (shop, sku,
// order_id). It keeps the sales form and the promise it was sold under, and
// what has happened to its units since: open units are qty − shipped −
// cancelled. A line known only from events that came before its sale (a
// cancel, shipment, return or promise change) holds them in Early until the
// sale arrives.
type Line struct {
	OrderID       string           `json:"order_id"`
	ParentOrderID string           `json:"parent_order_id,omitempty"`
	Qty           int64            `json:"qty"`
	UnitPriceFen  int64            `json:"unit_price_fen"`
	SalesForm     ledger.SalesForm `json:"sales_form"`
	SoldAt        time.Time        `json:"sold_at,omitzero"`
	// ShipBy is when the line must have shipped: the platform's promise
	// when the feed gave it, else the sale's time plus the listing's
	// promise; zero when the SKU had no promise. Promise is the slot that
	// decides which promise holds (the sale's own from its `at`, then
	// promise_changed by `at`).
	ShipBy  time.Time `json:"ship_by,omitzero"`
	Promise Slot      `json:"promise"`
	// Seq is the stream sequence of the sale; 0 while the sale is unknown.
	Seq       uint64 `json:"seq"`
	Shipped   int64  `json:"shipped"`
	Cancelled int64  `json:"cancelled"`
	Returned  int64  `json:"returned"`
	// Late is true while ship_late is open for the line.
	Late bool `json:"late"`
	// ClosedAt is when the last open unit shipped or was cancelled.
	ClosedAt time.Time `json:"closed_at,omitzero"`
	// Docs are the documents applied to the line, each as its event type's
	// letter and the document ("c:RF1", "s:SF1001", "s:all", "r:RT7"), so
	// that a re-send of a cancel, shipment or return is applied once.
	Docs []string `json:"docs,omitempty"`
	// Early holds the line's events that came before its sale, in stream
	// order; they are applied when the sale comes.
	Early []EarlyEvent `json:"early,omitempty"`
}

// EarlyEvent is an event of a line whose sale had not arrived: what the fold
// needs to apply it later.
type EarlyEvent struct {
	Type ledger.Type `json:"type"`
	ID   string      `json:"id"`
	Seq  uint64      `json:"seq"`
	At   time.Time   `json:"at"`
	// Qty is 0 for a cancel or shipment of every open unit.
	Qty       int64     `json:"qty,omitempty"`
	Doc       string    `json:"doc,omitempty"`
	Restocked int64     `json:"restocked,omitempty"`
	ShipBy    time.Time `json:"ship_by,omitzero"`
}

// LineState is where a line stands, as stores keep it.
type LineState string

// Line states.
const (
	// LineEarly: only events before the sale are known.
	LineEarly LineState = "early"
	// LineOpen: sold, with units neither shipped nor cancelled.
	LineOpen LineState = "open"
	// LineClosed: every unit shipped or cancelled.
	LineClosed LineState = "closed"
)

// State returns where the line stands.
func (l *Line) State() LineState {
	switch {
	case l.Seq == 0:
		return LineEarly
	case l.Open() > 0:
		return LineOpen
	}
	return LineClosed
}

// Open is the line's open units: sold, neither shipped nor cancelled.
func (l *Line) Open() int64 { return l.Qty - l.Shipped - l.Cancelled }

// ValueFen is what the buyer still pays for: (qty − cancelled) × unit price.
// A line's compensation is computed on it.
func (l *Line) ValueFen() int64 { return (l.Qty - l.Cancelled) * l.UnitPriceFen }

// sold reports whether the line's sale is known.
func (l *Line) sold() bool { return l.Seq != 0 }

// docKey is the document key of a cancel, shipment or return in Line.Docs.
func docKey(t ledger.Type, doc string) string {
	switch t {
	case ledger.Cancel:
		return "c:" + doc
	case ledger.Shipment:
		return "s:" + doc
	}
	return "r:" + doc
}

// hasDoc reports whether the line has applied (or holds early) the document.
func (l *Line) hasDoc(key string) bool {
	for _, d := range l.Docs {
		if d == key {
			return true
		}
	}
	return false
}

// early records an event of a line whose sale is unknown.
func earlyOf(seq uint64, e *ledger.Event) EarlyEvent {
	ev := EarlyEvent{Type: e.Type, ID: e.ID, Seq: seq, At: e.At.UTC(), Qty: ledger.Value(e.Qty), Doc: e.Doc()}
	switch e.Type {
	case ledger.Return:
		ev.Restocked = restockedOf(e)
	case ledger.PromiseChanged:
		ev.ShipBy = e.ShipBy.UTC()
	}
	return ev
}

// event turns an early event back into the event it came from.
func (ev *EarlyEvent) event(shop, sku, order string) ledger.Event {
	e := ledger.Event{ID: ev.ID, Type: ev.Type, Shop: shop, SKU: sku, At: ev.At, OrderID: order}
	switch ev.Type {
	case ledger.Cancel:
		if ev.Doc != ledger.DocAll {
			e.Qty, e.RefundID = ledger.Int64(ev.Qty), ev.Doc
		}
	case ledger.Shipment:
		if ev.Doc != ledger.DocAll {
			e.Qty, e.Waybill = ledger.Int64(ev.Qty), ev.Doc
		}
	case ledger.Return:
		e.Qty, e.ReturnID, e.Restocked = ledger.Int64(ev.Qty), ev.Doc, ledger.Int64(ev.Restocked)
	case ledger.PromiseChanged:
		e.ShipBy = ledger.Time(ev.ShipBy)
	}
	return e
}

// restockedOf is how many units of a return go back on the shelf.
func restockedOf(e *ledger.Event) int64 {
	if e.Restocked != nil {
		return *e.Restocked
	}
	return ledger.Value(e.Qty)
}

// lineOrder orders open lines as they are served: by ship-by (a line with no
// promise last), then by stream sequence.
func lineBefore(a, b *Line) bool {
	switch az, bz := a.ShipBy.IsZero(), b.ShipBy.IsZero(); {
	case az != bz:
		return bz
	case !a.ShipBy.Equal(b.ShipBy):
		return a.ShipBy.Before(b.ShipBy)
	}
	return a.Seq < b.Seq
}

// clone copies a line with its own documents and early events.
func (l *Line) clone() *Line {
	c := *l
	c.Promise = l.Promise.clone()
	c.Docs = slices.Clone(l.Docs)
	c.Early = slices.Clone(l.Early)
	return &c
}
