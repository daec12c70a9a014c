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
	SafetyStockSet    Type = "safety_stock_set"
	Restock           Type = "restock"
	Sale              Type = "sale"
	Cancel            Type = "cancel"
	Shipment          Type = "shipment"
	Return            Type = "return"
	PromiseChanged    Type = "promise_changed"
	Recount           Type = "recount"
	CapacityConfirmed Type = "capacity_confirmed"
)

// Types lists every event type in a stable order.
var Types = []Type{Listing, Delisting, StockSet, SafetyStockSet, Restock, Sale, Cancel, Shipment, Return,
	PromiseChanged, Recount, CapacityConfirmed}

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

	// sale, cancel, shipment, return, promise_changed: the order line is
	// (shop, sku, order_id).
	OrderID       string `json:"order_id,omitempty"`
	ParentOrderID string `json:"parent_order_id,omitempty"`
	UnitPriceFen  int64  `json:"unit_price_fen,omitempty"`
	LiveID        string `json:"live_id,omitempty"`
	// ShipBy is the line's promised ship time (sale: optional, the
	// platform's; promise_changed: the new one).
	ShipBy *time.Time `json:"ship_by,omitempty"`

	// sale, restock, capacity_confirmed, safety_stock_set, return; cancel
	// and shipment optionally (with their document).
	Qty *int64 `json:"qty,omitempty"`

	// cancel: the refund that returns part of a line; shipment: the package
	// that ships part of a line; return: the buyer's return; restock: the
	// goods receipt. Each names its document, so that a re-send is known.
	RefundID  string `json:"refund_id,omitempty"`
	Waybill   string `json:"waybill,omitempty"`
	ReturnID  string `json:"return_id,omitempty"`
	ReceiptID string `json:"receipt_id,omitempty"`
	// Restocked is how many returned units go back on the shelf (return;
	// default: all of qty).
	Restocked *int64 `json:"restocked,omitempty"`

	// recount
	Counted   *int64 `json:"counted,omitempty"`
	CountedBy string `json:"counted_by,omitempty"`

	// capacity_confirmed
	Supplier  string     `json:"supplier,omitempty"`
	DeliverBy *time.Time `json:"deliver_by,omitempty"`
}

// Int64 returns a pointer to v, for the optional quantity fields of Event.
func Int64(v int64) *int64 { return &v }

// Time returns a pointer to t, for the optional time fields of Event.
func Time(t time.Time) *time.Time { return &t }

// Value returns *p, or 0 when p is nil.
func Value(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// Key is the event's natural key: the fold applies an event of a key once,
// however late a re-send comes, and publishers set it as the Nats-Msg-Id
// header so that the stream keeps repeats out within its duplicate window.
//
//	sale      sale:<shop>:<sku>:<order_id>
//	cancel    cancel:<shop>:<sku>:<order_id>:<refund_id, or "all">
//	shipment  shipment:<shop>:<sku>:<order_id>:<waybill, or "all">
//	return    return:<shop>:<sku>:<order_id>:<return_id>
//	restock   restock:<shop>:<sku>:<receipt_id>, or the event id without one
//	others    the event id
func (e *Event) Key() string {
	switch e.Type {
	case Sale:
		return "sale:" + e.Shop + ":" + e.SKU + ":" + e.OrderID
	case Cancel:
		return "cancel:" + e.Shop + ":" + e.SKU + ":" + e.OrderID + ":" + orAll(e.RefundID)
	case Shipment:
		return "shipment:" + e.Shop + ":" + e.SKU + ":" + e.OrderID + ":" + orAll(e.Waybill)
	case Return:
		return "return:" + e.Shop + ":" + e.SKU + ":" + e.OrderID + ":" + e.ReturnID
	case Restock:
		if e.ReceiptID != "" {
			return "restock:" + e.Shop + ":" + e.SKU + ":" + e.ReceiptID
		}
	}
	return e.ID
}

// DocAll stands for "every open unit of the line" in the natural key of a
// cancel or shipment that names no qty (and so no document).
const DocAll = "all"

func orAll(doc string) string {
	if doc == "" {
		return DocAll
	}
	return doc
}

// Doc is the document a line event names: the refund of a cancel, the
// waybill of a shipment, the return id of a return; DocAll for a cancel or
// shipment of every open unit; empty for other types.
func (e *Event) Doc() string {
	switch e.Type {
	case Cancel:
		return orAll(e.RefundID)
	case Shipment:
		return orAll(e.Waybill)
	case Return:
		return e.ReturnID
	}
	return ""
}

// ShipDue returns when a line sold at `at` under the given promise must have
// shipped, and false when the promise is unknown (a sale of a never-listed
// SKU).
func ShipDue(at time.Time, form SalesForm, hours, days int) (time.Time, bool) {
	switch {
	case form == Spot && hours > 0:
		return at.Add(time.Duration(hours) * time.Hour), true
	case form == Presale && days > 0:
		return at.AddDate(0, 0, days), true
	}
	return time.Time{}, false
}
