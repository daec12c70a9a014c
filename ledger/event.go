package ledger

import (
	"time"
)

// Type names the kind of a stock change.
type Type string

// Event types, as they appear in the `type` field.
const (
	Listing           Type = "listing"
	Delisting         Type = "delisting"
	StockSet          Type = "stock_set"
	Restock           Type = "restock"
	Sale              Type = "sale"
	Cancel            Type = "cancel"
	Shipment          Type = "shipment"
	Recount           Type = "recount"
	CapacityConfirmed Type = "capacity_confirmed"
)

// Types lists every event type in a stable order.
var Types = []Type{Listing, Delisting, StockSet, Restock, Sale, Cancel, Shipment, Recount, CapacityConfirmed}

// SalesForm says whether a product sells from stock or as a presale.
type SalesForm string

// Sales forms of the seed: spot ships within 24, 48 or 72 hours; presale
// within 4 to 90 days.
const (
	Spot    SalesForm = "spot"
	Presale SalesForm = "presale"
)

// Event is one stock change. Fields beyond the common ones (ID, Type, Shop,
// SKU, At) belong to particular types; Validate refuses a field that does not
// belong to the event's type. Optional numbers whose zero value is valid are
// pointers, so that an absent `stock` is told apart from `"stock": 0`.
type Event struct {
	ID   string    `json:"id"`
	Type Type      `json:"type"`
	Shop string    `json:"shop"`
	SKU  string    `json:"sku"`
	At   time.Time `json:"at"`

	// listing
	Title           string    `json:"title,omitempty"`
	PriceFen        int64     `json:"price_fen,omitempty"`
	SalesForm       SalesForm `json:"sales_form,omitempty"`
	ShipWithinHours int       `json:"ship_within_hours,omitempty"`
	ShipWithinDays  int       `json:"ship_within_days,omitempty"`

	// listing, stock_set
	Stock *int64 `json:"stock,omitempty"`

	// sale, cancel, shipment
	OrderID      string `json:"order_id,omitempty"`
	UnitPriceFen int64  `json:"unit_price_fen,omitempty"`
	LiveID       string `json:"live_id,omitempty"`

	// sale, restock, capacity_confirmed
	Qty *int64 `json:"qty,omitempty"`

	// recount
	Counted   *int64 `json:"counted,omitempty"`
	CountedBy string `json:"counted_by,omitempty"`

	// capacity_confirmed
	Supplier  string     `json:"supplier,omitempty"`
	DeliverBy *time.Time `json:"deliver_by,omitempty"`
}

// Int64 returns a pointer to v, for the optional quantity fields of Event.
func Int64(v int64) *int64 { return &v }

// Value returns *p, or 0 when p is nil.
func Value(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// IdempotencyKey is the key an event is deduplicated by on the stream
// (the Nats-Msg-Id header): the order id for a sale, so that a re-sent order is
// stored once whatever event id the feed gave it, and the event id otherwise.
func (e *Event) IdempotencyKey() string {
	if e.Type == Sale {
		return e.OrderID
	}
	return e.ID
}

// ShipDue returns when an order sold at `at` under the given promise must have
// shipped, and false when the promise is unknown (a sale of a never-listed SKU).
func ShipDue(at time.Time, form SalesForm, hours, days int) (time.Time, bool) {
	switch {
	case form == Spot && hours > 0:
		return at.Add(time.Duration(hours) * time.Hour), true
	case form == Presale && days > 0:
		return at.AddDate(0, 0, days), true
	}
	return time.Time{}, false
}
