package projections

import (
	"stockledger/ledger"
	"time"
)

// AlertKind names why an alert was raised.
type AlertKind string

// Alert kinds of the design.
const (
	// Oversold: spot lines recorded past real stock (committed > on_hand).
	Oversold AlertKind = "oversold"
	// PhantomStock: the platform lists more units than it should show
	// (listed > sellable).
	PhantomStock AlertKind = "phantom_stock"
	// CapacityExceeded: presale lines the confirmed lots cannot serve.
	CapacityExceeded AlertKind = "capacity_exceeded"
	// CapacityLate: served presale lines whose lots deliver only after the
	// line's ship-by.
	CapacityLate AlertKind = "capacity_late"
	// ShipLate: a line with open units past its ship-by; one alert per line.
	ShipLate AlertKind = "ship_late"
	// RecountMismatch: a recount differs from the book on_hand.
	RecountMismatch AlertKind = "recount_mismatch"
)

// AlertKinds lists every kind in a stable order.
var AlertKinds = []AlertKind{Oversold, PhantomStock, CapacityExceeded, CapacityLate, ShipLate, RecountMismatch, SelloutSoon, FulfilmentRisk}

// AlertState is open or resolved.
type AlertState string

// Alert states.
const (
	AlertOpen     AlertState = "open"
	AlertResolved AlertState = "resolved"
)

// Alert is a problem of one SKU with the money at risk. An alert resolves
// itself when its cause goes away; it is updated in place while open.
type Alert struct {
	ID         string     `json:"id"`
	Kind       AlertKind  `json:"kind"`
	Shop       string     `json:"shop"`
	SKU        string     `json:"sku"`
	OrderID    string     `json:"order_id,omitempty"`
	State      AlertState `json:"state"`
	RaisedAt   time.Time  `json:"raised_at"`
	ResolvedAt *time.Time `json:"resolved_at"`
	Message    string     `json:"message"`
	// UnitsShort is how many units the cause is short by: sold past stock or
	// capacity, listed past the real limit, the late order's units, or the
	// recount's difference.
	UnitsShort int64 `json:"units_short"`
	// ExposureFen is the compensation the platform would charge, in fen.
	ExposureFen int64 `json:"exposure_fen"`
	// Seq is the stream sequence of the event that raised the alert.
	Seq uint64 `json:"seq"`
	// UpdatedSeq is the stream sequence of its latest change.
	UpdatedSeq uint64 `json:"updated_seq"`
	// Rev counts the alert's changes: 1 when raised.
	Rev int `json:"rev"`
}

// View is the read side of one SKU: the platform's figure and the real ones
// side by side. It is what GET /v1/shops/{shop}/skus/{sku} answers.
type View struct {
	Shop             string           `json:"shop"`
	SKU              string           `json:"sku"`
	Title            string           `json:"title"`
	Status           Status           `json:"status"`
	SalesForm        ledger.SalesForm `json:"sales_form"`
	ShipWithinHours  int              `json:"ship_within_hours,omitempty"`
	ShipWithinDays   int              `json:"ship_within_days,omitempty"`
	PriceFen         int64            `json:"price_fen"`
	Listed           int64            `json:"listed"`
	OnHand           int64            `json:"on_hand"`
	Committed        int64            `json:"committed"`
	Available        int64            `json:"available"`
	Capacity         int64            `json:"capacity"`
	PresaleCommitted int64            `json:"presale_committed"`
	PresaleShipped   int64            `json:"presale_shipped"`
	CapacityLeft     int64            `json:"capacity_left"`
	SafetyStock      int64            `json:"safety_stock"`
	Sellable         int64            `json:"sellable"`
	// OpenOrders and LateOrders count open order lines, and those past
	// their ship-by.
	OpenOrders  int64     `json:"open_orders"`
	LateOrders  int64     `json:"late_orders"`
	ExposureFen int64     `json:"exposure_fen"`
	OpenAlerts  int64     `json:"open_alerts"`
	LastSeq     uint64    `json:"last_seq"`
	UpdatedAt   time.Time `json:"updated_at"`
	// SyncSeq is the sequence of the SKU's pending sync instruction (zero
	// when none): InstructionOf gives the key the projector published.
	SyncSeq uint64 `json:"-"`
	// ViewPace adds pace_per_hour, sellout_eta, live_id and sales_by_minute.
	ViewPace
}

// exposureFen is the money the SKU risks: each open line once at the larger
// charge it risks, plus the phantom units'.
func (s *SKU) exposureFen() int64 {
	sv := s.served
	return sv.spot.unservedFen + sv.spot.lateFen + sv.presale.unservedFen + sv.presale.lateFen +
		s.phantomUnits()*UnshippedCompensationFen(s.PriceFen)
}

// View derives the read side of the SKU. ExposureFen counts every open line
// once, at the larger charge it risks (unshipped when it cannot be served,
// else late when it is or will be late), plus the phantom units' risk.
func (s *SKU) View() View {
	return View{
		Shop: s.Shop, SKU: s.SKU, Title: s.Title, Status: s.Status, SalesForm: s.SalesForm,
		ShipWithinHours: s.ShipWithinHours, ShipWithinDays: s.ShipWithinDays, PriceFen: s.PriceFen,
		Listed: s.Listed, OnHand: s.OnHand, Committed: s.spot.units, Available: s.Available(),
		Capacity: s.Capacity, PresaleCommitted: s.presale.units, PresaleShipped: s.PresaleShipped,
		CapacityLeft: s.CapacityLeft(), SafetyStock: s.SafetyStock, Sellable: s.Sellable(),
		OpenOrders: int64(len(s.spot.lines) + len(s.presale.lines)), LateOrders: int64(s.spot.late + s.presale.late),
		ExposureFen: s.exposureFen(),
		OpenAlerts:  int64(len(s.Alerts)), LastSeq: s.LastSeq, UpdatedAt: s.UpdatedAt,
		SyncSeq: s.Synced.Seq, ViewPace: s.paceView(),
	}
}
