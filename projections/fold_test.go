package projections_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"stockledger/ledger"
	"stockledger/projections"
)

// The fold takes time only from events, so every test tells time as an
// offset from one fixed instant: foldT0 plays the scenarios' "now".
var foldT0 = time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)

const (
	foldShop = "shop-demo"
	foldSKU  = "sku-1"
)

// Event builders. Each takes its time as an offset from foldT0; shop, sku and
// id are filled in by foldRun.apply.

func evListSpot(at time.Duration, stock, priceFen int64, hours int) ledger.Event {
	return ledger.Event{Type: ledger.Listing, At: foldT0.Add(at), Title: "Item", PriceFen: priceFen,
		Stock: ledger.Int64(stock), SalesForm: ledger.Spot, ShipWithinHours: hours}
}

func evListPresale(at time.Duration, stock, priceFen int64, days int) ledger.Event {
	return ledger.Event{Type: ledger.Listing, At: foldT0.Add(at), Title: "Item", PriceFen: priceFen,
		Stock: ledger.Int64(stock), SalesForm: ledger.Presale, ShipWithinDays: days}
}

func evDelist(at time.Duration) ledger.Event {
	return ledger.Event{Type: ledger.Delisting, At: foldT0.Add(at)}
}

func evStockSet(at time.Duration, stock int64) ledger.Event {
	return ledger.Event{Type: ledger.StockSet, At: foldT0.Add(at), Stock: ledger.Int64(stock)}
}

func evRestock(at time.Duration, qty int64) ledger.Event {
	return ledger.Event{Type: ledger.Restock, At: foldT0.Add(at), Qty: ledger.Int64(qty)}
}

func evSale(at time.Duration, order string, qty, unitPriceFen int64) ledger.Event {
	return ledger.Event{Type: ledger.Sale, At: foldT0.Add(at), OrderID: order, Qty: ledger.Int64(qty), UnitPriceFen: unitPriceFen}
}

func evCancel(at time.Duration, order string) ledger.Event {
	return ledger.Event{Type: ledger.Cancel, At: foldT0.Add(at), OrderID: order}
}

func evShip(at time.Duration, order string) ledger.Event {
	return ledger.Event{Type: ledger.Shipment, At: foldT0.Add(at), OrderID: order}
}

func evRecount(at time.Duration, counted int64) ledger.Event {
	return ledger.Event{Type: ledger.Recount, At: foldT0.Add(at), Counted: ledger.Int64(counted)}
}

func evCapacity(at time.Duration, supplier string, qty int64, deliverBy time.Duration) ledger.Event {
	d := foldT0.Add(deliverBy)
	return ledger.Event{Type: ledger.CapacityConfirmed, At: foldT0.Add(at), Supplier: supplier, Qty: ledger.Int64(qty), DeliverBy: &d}
}

func withSKU(e ledger.Event, sku string) ledger.Event {
	e.SKU = sku
	return e
}

// foldEventID is a deterministic UUID for the event at stream sequence seq.
func foldEventID(seq uint64) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", seq) }

// foldRun folds events into SKUs of foldShop, as the projector does: one
// stream sequence per event, in order, every event validated first (the fold
// is only ever given valid events).
type foldRun struct {
	t    *testing.T
	seq  uint64
	skus map[string]*projections.SKU
}

func newFoldRun(t *testing.T) *foldRun {
	return &foldRun{t: t, skus: make(map[string]*projections.SKU)}
}

func (r *foldRun) sku(name string) *projections.SKU {
	s, ok := r.skus[name]
	if !ok {
		s = projections.NewSKU(foldShop, name)
		r.skus[name] = s
	}
	return s
}

// prepare fills shop, sku (foldSKU when empty), id and the next sequence, and
// fails the test when e is not valid.
func (r *foldRun) prepare(e ledger.Event) (uint64, ledger.Event) {
	r.t.Helper()
	r.seq++
	e.Shop = foldShop
	if e.SKU == "" {
		e.SKU = foldSKU
	}
	e.ID = foldEventID(r.seq)
	if err := e.Validate(); err != nil {
		r.t.Fatalf("test event %d (%s) is not valid: %v", r.seq, e.Type, err)
	}
	return r.seq, e
}

// try applies e and returns what Apply returned.
func (r *foldRun) try(e ledger.Event) ([]projections.Alert, error) {
	r.t.Helper()
	seq, e := r.prepare(e)
	return r.sku(e.SKU).Apply(seq, &e)
}

// apply applies e and fails the test on an error.
func (r *foldRun) apply(e ledger.Event) []projections.Alert {
	r.t.Helper()
	changes, err := r.try(e)
	if err != nil {
		r.t.Fatalf("apply seq %d (%s): %v", r.seq, e.Type, err)
	}
	return changes
}

func (r *foldRun) applyAll(events ...ledger.Event) []projections.Alert {
	r.t.Helper()
	var changes []projections.Alert
	for _, e := range events {
		changes = append(changes, r.apply(e)...)
	}
	return changes
}

// foldFigures are the figures of a View a test states exactly. Available and
// CapacityLeft are checked against their definitions separately.
type foldFigures struct {
	Status           projections.Status
	SalesForm        ledger.SalesForm
	PriceFen         int64
	Listed           int64
	OnHand           int64
	Committed        int64
	Capacity         int64
	PresaleCommitted int64
	OpenOrders       int64
	LateOrders       int64
	ExposureFen      int64
}

func figuresOf(v projections.View) foldFigures {
	return foldFigures{Status: v.Status, SalesForm: v.SalesForm, PriceFen: v.PriceFen, Listed: v.Listed, OnHand: v.OnHand,
		Committed: v.Committed, Capacity: v.Capacity, PresaleCommitted: v.PresaleCommitted,
		OpenOrders: v.OpenOrders, LateOrders: v.LateOrders, ExposureFen: v.ExposureFen}
}

// alertFigure is what a test states of one open alert.
type alertFigure struct {
	Kind        projections.AlertKind
	OrderID     string
	UnitsShort  int64
	ExposureFen int64
}

func (a alertFigure) String() string {
	return fmt.Sprintf("%s%s units_short=%d exposure_fen=%d", a.Kind, strings.TrimSuffix("/"+a.OrderID, "/"), a.UnitsShort, a.ExposureFen)
}

func sortAlertFigures(as []alertFigure) {
	slices.SortFunc(as, func(a, b alertFigure) int {
		return strings.Compare(string(a.Kind)+"/"+a.OrderID, string(b.Kind)+"/"+b.OrderID)
	})
}

// openAlertFigures lists the open alerts of s, sorted by kind and order.
func openAlertFigures(s *projections.SKU) []alertFigure {
	var out []alertFigure
	for _, a := range s.Alerts {
		if a.State != projections.AlertOpen {
			continue
		}
		out = append(out, alertFigure{a.Kind, a.OrderID, a.UnitsShort, a.ExposureFen})
	}
	sortAlertFigures(out)
	return out
}

// checkSKU compares s with the figures and open alerts a test wants, and
// checks the derived figures against their definitions.
func checkSKU(t *testing.T, s *projections.SKU, want foldFigures, wantAlerts []alertFigure) {
	t.Helper()
	v := s.View()
	if got := figuresOf(v); got != want {
		t.Errorf("view figures:\n got %+v\nwant %+v", got, want)
	}
	if v.Available != v.OnHand-v.Committed {
		t.Errorf("available = %d, want on_hand − committed = %d", v.Available, v.OnHand-v.Committed)
	}
	if v.CapacityLeft != v.Capacity-v.PresaleCommitted-v.PresaleShipped {
		t.Errorf("capacity_left = %d, want capacity − presale_committed − presale_shipped = %d", v.CapacityLeft, v.Capacity-v.PresaleCommitted-v.PresaleShipped)
	}
	wantAlerts = slices.Clone(wantAlerts)
	sortAlertFigures(wantAlerts)
	if got := openAlertFigures(s); !slices.Equal(got, wantAlerts) {
		t.Errorf("open alerts:\n got %v\nwant %v", got, wantAlerts)
	}
	if v.OpenAlerts != int64(len(wantAlerts)) {
		t.Errorf("view open_alerts = %d, want %d", v.OpenAlerts, len(wantAlerts))
	}
}

func findChange(changes []projections.Alert, kind projections.AlertKind) (projections.Alert, bool) {
	for i := len(changes) - 1; i >= 0; i-- {
		if changes[i].Kind == kind {
			return changes[i], true
		}
	}
	return projections.Alert{}, false
}

const (
	hr = time.Hour
	dy = 24 * time.Hour
)

// Prices used below and the compensation they give, worked out by hand from
// DESIGN.md: late clamp(v/10, 500, 3000), unshipped clamp(3v/10, 500, 20000).
//
//	value   late  unshipped
//	 9900    990       2970
//	19800   1980       5940
//	29700   2970       8910
//	39600   3000      11880
//	49500   3000      14850
//	 5900    590       1770
//	29500   2950       8850
const foldPrice = 9900

// TestFoldTransitions folds short event sequences of one SKU and states every
// figure of the view and every open alert after them.
func TestFoldTransitions(t *testing.T) {
	listed, delisted, unlisted := projections.StatusListed, projections.StatusDelisted, projections.StatusUnlisted
	tests := []struct {
		name   string
		events []ledger.Event
		want   foldFigures
		alerts []alertFigure
	}{
		{
			name:   "first spot listing sets listed and on_hand",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48)},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 10, OnHand: 10},
		},
		{
			name:   "presale listing sets listed but not on_hand; nothing confirmed yet is phantom",
			events: []ledger.Event{evListPresale(-10*hr, 5, foldPrice, 15)},
			want:   foldFigures{Status: listed, SalesForm: "presale", PriceFen: foldPrice, Listed: 5, ExposureFen: 5 * 2970},
			alerts: []alertFigure{{Kind: projections.PhantomStock, UnitsShort: 5, ExposureFen: 5 * 2970}},
		},
		{
			name: "relisting in the same form and promise updates foldPrice and listed, keeps on_hand",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evSale(-9*hr, "o1", 2, foldPrice),
				evListSpot(-8*hr, 8, 12000, 48)},
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: 12000, Listed: 8, OnHand: 10, Committed: 2, OpenOrders: 1},
		},
		{
			name:   "a spot listing after delisting does not reset on_hand",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evDelist(-9 * hr), evListSpot(-8*hr, 3, foldPrice, 48)},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 3, OnHand: 10},
		},
		{
			name: "the first spot listing after a presale one sets on_hand",
			events: []ledger.Event{evListPresale(-10*hr, 5, foldPrice, 15), evDelist(-9 * hr),
				evListSpot(-8*hr, 7, foldPrice, 24)},
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 7, OnHand: 7},
		},
		{
			name: "sales form changes after delisting",
			events: []ledger.Event{evListSpot(-10*hr, 3, 25800, 48), evDelist(-9 * hr),
				evListPresale(-8*hr, 3, 25800, 10), evCapacity(-8*hr, "factory-a", 3, 5*dy)},
			want: foldFigures{Status: listed, SalesForm: "presale", PriceFen: 25800, Listed: 3, OnHand: 3, Capacity: 3},
		},
		{
			name:   "delisting keeps the figures and resolves phantom_stock",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evStockSet(-9*hr, 15), evDelist(-8 * hr)},
			want:   foldFigures{Status: delisted, SalesForm: "spot", PriceFen: foldPrice, Listed: 15, OnHand: 10},
		},
		{
			name:   "delisting a never-listed SKU leaves it unlisted",
			events: []ledger.Event{evDelist(-8 * hr)},
			want:   foldFigures{Status: unlisted},
		},
		{
			name:   "stock_set sets listed",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evStockSet(-9*hr, 4)},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 4, OnHand: 10},
		},
		{
			name:   "stock_set 0 stops selling and leaves orders alone",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evSale(-9*hr, "o1", 2, foldPrice), evStockSet(-8*hr, 0)},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 0, OnHand: 10, Committed: 2, OpenOrders: 1},
		},
		{
			name:   "stock_set past available raises phantom_stock",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evSale(-9*hr, "o1", 3, foldPrice), evStockSet(-8*hr, 9)},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 9, OnHand: 10, Committed: 3, OpenOrders: 1, ExposureFen: 2 * 2970},
			alerts: []alertFigure{{Kind: projections.PhantomStock, UnitsShort: 2, ExposureFen: 2 * 2970}},
		},
		{
			name:   "phantom_stock resolved by lowering the listed figure",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evStockSet(-9*hr, 15), evStockSet(-8*hr, 10)},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 10, OnHand: 10},
		},
		{
			name:   "restock adds to on_hand",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evRestock(-9*hr, 5)},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 10, OnHand: 15},
		},
		{
			name:   "recount equal to the book raises nothing",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evRecount(-9*hr, 10)},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 10, OnHand: 10},
		},
		{
			name:   "recount short sets on_hand and raises recount_mismatch (and phantom_stock)",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evRecount(-9*hr, 7)},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 10, OnHand: 7, ExposureFen: 3 * 2970},
			alerts: []alertFigure{
				{Kind: projections.RecountMismatch, UnitsShort: 3},
				{Kind: projections.PhantomStock, UnitsShort: 3, ExposureFen: 3 * 2970},
			},
		},
		{
			name:   "recount over sets on_hand and raises recount_mismatch",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evRecount(-9*hr, 12)},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 10, OnHand: 12},
			alerts: []alertFigure{{Kind: projections.RecountMismatch, UnitsShort: 2}},
		},
		{
			name:   "a second differing recount updates recount_mismatch",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evStockSet(-9*hr, 0), evRecount(-8*hr, 7), evRecount(-7*hr, 12)},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 0, OnHand: 12},
			alerts: []alertFigure{{Kind: projections.RecountMismatch, UnitsShort: 5}},
		},
		{
			name: "a later recount matching the book resolves recount_mismatch",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evRecount(-9*hr, 7), evStockSet(-8*hr, 7),
				evRecount(-7*hr, 7)},
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 7, OnHand: 7},
		},
		{
			name: "capacity sums the suppliers",
			events: []ledger.Event{evListPresale(-10*hr, 100, foldPrice, 15), evCapacity(-9*hr, "a", 60, 10*dy),
				evCapacity(-9*hr, "b", 40, 12*dy)},
			want: foldFigures{Status: listed, SalesForm: "presale", PriceFen: foldPrice, Listed: 100, Capacity: 100},
		},
		{
			name: "a supplier's later confirmation replaces its earlier one",
			events: []ledger.Event{evListPresale(-10*hr, 100, foldPrice, 15), evCapacity(-9*hr, "a", 60, 10*dy),
				evCapacity(-9*hr, "b", 40, 12*dy), evCapacity(-8*hr, "a", 30, 10*dy)},
			want:   foldFigures{Status: listed, SalesForm: "presale", PriceFen: foldPrice, Listed: 100, Capacity: 70, ExposureFen: 30 * 2970},
			alerts: []alertFigure{{Kind: projections.PhantomStock, UnitsShort: 30, ExposureFen: 30 * 2970}},
		},
		{
			name:   "spot sale takes from listed and commits units",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evSale(-9*hr, "o1", 2, foldPrice)},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 8, OnHand: 10, Committed: 2, OpenOrders: 1},
		},
		{
			name: "presale sale commits presale units",
			events: []ledger.Event{evListPresale(-10*hr, 10, foldPrice, 15), evCapacity(-10*hr, "a", 10, 10*dy),
				evSale(-9*hr, "o1", 4, foldPrice)},
			want: foldFigures{Status: listed, SalesForm: "presale", PriceFen: foldPrice, Listed: 6, Capacity: 10, PresaleCommitted: 4, OpenOrders: 1},
		},
		{
			name: "a re-sent sale is counted once, whatever qty it claims",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evSale(-9*hr, "o1", 2, foldPrice),
				evSale(-9*hr, "o1", 2, foldPrice), evSale(-8*hr, "o1", 5, foldPrice)},
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 8, OnHand: 10, Committed: 2, OpenOrders: 1},
		},
		{
			name:   "a sale past listed is recorded and listed stays at 0",
			events: []ledger.Event{evListSpot(-10*hr, 1, foldPrice, 48), evSale(-9*hr, "o1", 2, foldPrice)},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 0, OnHand: 1, Committed: 2, OpenOrders: 1, ExposureFen: 5940},
			alerts: []alertFigure{{Kind: projections.Oversold, UnitsShort: 1, ExposureFen: 5940}},
		},
		{
			name:   "a sale of a never-listed SKU is recorded as spot past a stock of 0",
			events: []ledger.Event{evSale(-9*hr, "o1", 2, foldPrice)},
			want:   foldFigures{Status: unlisted, Committed: 2, OpenOrders: 1, ExposureFen: 5940},
			alerts: []alertFigure{{Kind: projections.Oversold, UnitsShort: 2, ExposureFen: 5940}},
		},
		{
			name:   "a never-listed SKU listed as spot after a sale takes the listing's stock as on_hand",
			events: []ledger.Event{evSale(-9*hr, "o1", 2, foldPrice), evListSpot(-8*hr, 5, foldPrice, 48)},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 5, OnHand: 5, Committed: 2, OpenOrders: 1, ExposureFen: 2 * 2970},
			alerts: []alertFigure{{Kind: projections.PhantomStock, UnitsShort: 2, ExposureFen: 2 * 2970}},
		},
		{
			name:   "cancel returns units to listed and committed",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evSale(-9*hr, "o1", 2, foldPrice), evCancel(-8*hr, "o1")},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 10, OnHand: 10},
		},
		{
			name: "cancel of a presale order returns its presale units",
			events: []ledger.Event{evListPresale(-10*hr, 10, foldPrice, 15), evCapacity(-10*hr, "a", 10, 10*dy),
				evSale(-9*hr, "o1", 4, foldPrice), evCancel(-8*hr, "o1")},
			want: foldFigures{Status: listed, SalesForm: "presale", PriceFen: foldPrice, Listed: 10, Capacity: 10},
		},
		{
			name:   "spot shipment takes from on_hand and committed",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evSale(-9*hr, "o1", 2, foldPrice), evShip(-8*hr, "o1")},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 8, OnHand: 8},
		},
		{
			name: "presale shipment takes from presale_committed only",
			events: []ledger.Event{evListPresale(-10*hr, 10, foldPrice, 15), evCapacity(-10*hr, "a", 10, 10*dy),
				evSale(-9*hr, "o1", 4, foldPrice), evShip(-8*hr, "o1")},
			want: foldFigures{Status: listed, SalesForm: "presale", PriceFen: foldPrice, Listed: 6, Capacity: 10},
		},
		{
			name: "cancel of a shipped order is ignored",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evSale(-9*hr, "o1", 2, foldPrice), evShip(-8*hr, "o1"),
				evCancel(-7*hr, "o1")},
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 8, OnHand: 8},
		},
		{
			name: "shipment of a cancelled order is ignored",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evSale(-9*hr, "o1", 2, foldPrice), evCancel(-8*hr, "o1"),
				evShip(-7*hr, "o1")},
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 10, OnHand: 10},
		},
		{
			name: "a second cancel is ignored",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evSale(-9*hr, "o1", 2, foldPrice), evCancel(-8*hr, "o1"),
				evCancel(-7*hr, "o1")},
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 10, OnHand: 10},
		},
		{
			name: "a second shipment is ignored",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evSale(-9*hr, "o1", 2, foldPrice), evShip(-8*hr, "o1"),
				evShip(-7*hr, "o1")},
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 8, OnHand: 8},
		},
		{
			name:   "a cancel of an order not yet seen changes no quantity",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evCancel(-8*hr, "o1")},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 10, OnHand: 10},
		},
		{
			name:   "a shipment of an order not yet seen changes no quantity",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evShip(-8*hr, "o1")},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 10, OnHand: 10},
		},
		{
			name:   "cancel before its sale: the sale counts as cancelled at once",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evCancel(-8*hr, "o1"), evSale(-9*hr, "o1", 2, foldPrice)},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 10, OnHand: 10},
		},
		{
			name:   "shipment before its sale: the sale counts as shipped at once",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evShip(-8*hr, "o1"), evSale(-9*hr, "o1", 2, foldPrice)},
			want:   foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 8, OnHand: 8},
		},
		{
			name: "presale shipment before its sale",
			events: []ledger.Event{evListPresale(-10*hr, 10, foldPrice, 15), evCapacity(-10*hr, "a", 10, 10*dy),
				evShip(-8*hr, "o1"), evSale(-9*hr, "o1", 4, foldPrice)},
			want: foldFigures{Status: listed, SalesForm: "presale", PriceFen: foldPrice, Listed: 6, Capacity: 10},
		},
		{
			name: "cancel before its sale, then the sale re-sent: counted once",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evCancel(-8*hr, "o1"), evSale(-9*hr, "o1", 2, foldPrice),
				evSale(-9*hr, "o1", 2, foldPrice), evShip(-7*hr, "o1")},
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 10, OnHand: 10},
		},
		{
			name: "oversold: recount below committed",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evSale(-9*hr, "o1", 4, foldPrice),
				evSale(-9*hr, "o2", 4, foldPrice), evRecount(-8*hr, 5)},
			// o1 (4) is served from 5, o2 (4) is not: 3 short, o2's unshipped
			// compensation. listed 2 past an available of 0 is phantom.
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 2, OnHand: 5, Committed: 8, OpenOrders: 2,
				ExposureFen: 11880 + 2*2970},
			alerts: []alertFigure{
				{Kind: projections.Oversold, UnitsShort: 3, ExposureFen: 11880},
				{Kind: projections.PhantomStock, UnitsShort: 2, ExposureFen: 2 * 2970},
				{Kind: projections.RecountMismatch, UnitsShort: 5},
			},
		},
		{
			name: "oversold: an order that does not fit whole is unserved, a later smaller one is served",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evSale(-9*hr, "o1", 3, foldPrice),
				evSale(-9*hr, "o2", 5, foldPrice), evSale(-9*hr, "o3", 2, foldPrice), evRecount(-8*hr, 6)},
			// from 6: o1 (3) served, 3 left; o2 (5) unserved; o3 (2) served.
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 0, OnHand: 6, Committed: 10, OpenOrders: 3,
				ExposureFen: 14850},
			alerts: []alertFigure{
				{Kind: projections.Oversold, UnitsShort: 4, ExposureFen: 14850},
				{Kind: projections.RecountMismatch, UnitsShort: 4},
			},
		},
		{
			name: "oversold: orders served oldest first, not best fit",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evSale(-9*hr, "o1", 2, foldPrice),
				evSale(-9*hr, "o2", 3, foldPrice), evRecount(-8*hr, 3)},
			// from 3: o1 (2) served, 1 left; o2 (3) unserved, although o2 alone would fit.
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 5, OnHand: 3, Committed: 5, OpenOrders: 2,
				ExposureFen: 8910 + 5*2970},
			alerts: []alertFigure{
				{Kind: projections.Oversold, UnitsShort: 2, ExposureFen: 8910},
				{Kind: projections.PhantomStock, UnitsShort: 5, ExposureFen: 5 * 2970},
				{Kind: projections.RecountMismatch, UnitsShort: 7},
			},
		},
		{
			name: "restock resolves oversold",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evSale(-9*hr, "o1", 4, foldPrice),
				evSale(-9*hr, "o2", 4, foldPrice), evRecount(-8*hr, 5), evRestock(-7*hr, 3)},
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 2, OnHand: 8, Committed: 8, OpenOrders: 2,
				ExposureFen: 2 * 2970},
			alerts: []alertFigure{
				{Kind: projections.PhantomStock, UnitsShort: 2, ExposureFen: 2 * 2970},
				{Kind: projections.RecountMismatch, UnitsShort: 5},
			},
		},
		{
			name: "cancel resolves oversold",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evSale(-9*hr, "o1", 4, foldPrice),
				evSale(-9*hr, "o2", 4, foldPrice), evRecount(-8*hr, 5), evCancel(-7*hr, "o2")},
			// listed 2+4 = 6 past an available of 1: 5 phantom units.
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 6, OnHand: 5, Committed: 4, OpenOrders: 1,
				ExposureFen: 5 * 2970},
			alerts: []alertFigure{
				{Kind: projections.PhantomStock, UnitsShort: 5, ExposureFen: 5 * 2970},
				{Kind: projections.RecountMismatch, UnitsShort: 5},
			},
		},
		{
			name: "shipping the served orders keeps oversold at the unserved ones",
			events: []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48), evSale(-9*hr, "o1", 4, foldPrice),
				evSale(-9*hr, "o2", 4, foldPrice), evRecount(-8*hr, 5), evStockSet(-8*hr, 0), evShip(-7*hr, "o1")},
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 0, OnHand: 1, Committed: 4, OpenOrders: 1,
				ExposureFen: 11880},
			alerts: []alertFigure{
				{Kind: projections.Oversold, UnitsShort: 3, ExposureFen: 11880},
				{Kind: projections.RecountMismatch, UnitsShort: 5},
			},
		},
		{
			name: "capacity_exceeded: presale sold past confirmed capacity",
			events: []ledger.Event{evListPresale(-10*hr, 30, 5900, 15), evCapacity(-10*hr, "a", 20, 10*dy),
				evSale(-9*hr, "o1", 10, 5900), evSale(-9*hr, "o2", 10, 5900), evSale(-9*hr, "o3", 5, 5900)},
			// from 20: o1 and o2 served, o3 (29500) unserved. listed 5 past a
			// capacity_left of -5 (so 0): 5 phantom units at 1770.
			want: foldFigures{Status: listed, SalesForm: "presale", PriceFen: 5900, Listed: 5, Capacity: 20, PresaleCommitted: 25,
				OpenOrders: 3, ExposureFen: 8850 + 5*1770},
			alerts: []alertFigure{
				{Kind: projections.CapacityExceeded, UnitsShort: 5, ExposureFen: 8850},
				{Kind: projections.PhantomStock, UnitsShort: 5, ExposureFen: 5 * 1770},
			},
		},
		{
			name: "more capacity resolves capacity_exceeded",
			events: []ledger.Event{evListPresale(-10*hr, 30, 5900, 15), evCapacity(-10*hr, "a", 20, 10*dy),
				evSale(-9*hr, "o1", 10, 5900), evSale(-9*hr, "o2", 10, 5900), evSale(-9*hr, "o3", 5, 5900),
				evCapacity(-8*hr, "b", 10, 12*dy)},
			want: foldFigures{Status: listed, SalesForm: "presale", PriceFen: 5900, Listed: 5, Capacity: 30, PresaleCommitted: 25,
				OpenOrders: 3},
		},
		{
			name: "cancel resolves capacity_exceeded",
			events: []ledger.Event{evListPresale(-10*hr, 30, 5900, 15), evCapacity(-10*hr, "a", 20, 10*dy),
				evSale(-9*hr, "o1", 10, 5900), evSale(-9*hr, "o2", 10, 5900), evSale(-9*hr, "o3", 5, 5900),
				evStockSet(-8*hr, 0), evCancel(-7*hr, "o1")},
			// the cancel returns 10 to listed: 10 past a capacity_left of 5.
			want: foldFigures{Status: listed, SalesForm: "presale", PriceFen: 5900, Listed: 10, Capacity: 20, PresaleCommitted: 15,
				OpenOrders: 2, ExposureFen: 5 * 1770},
			alerts: []alertFigure{{Kind: projections.PhantomStock, UnitsShort: 5, ExposureFen: 5 * 1770}},
		},
		{
			name:   "ship_late raised by a later event's time, exposure the late compensation",
			events: []ledger.Event{evListSpot(-30*hr, 10, foldPrice, 24), evSale(-28*hr, "o1", 2, foldPrice), evRestock(0, 1)},
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 8, OnHand: 11, Committed: 2,
				OpenOrders: 1, LateOrders: 1, ExposureFen: 1980},
			alerts: []alertFigure{{Kind: projections.ShipLate, OrderID: "o1", UnitsShort: 2, ExposureFen: 1980}},
		},
		{
			name: "ship_late of a presale order past its days",
			events: []ledger.Event{evListPresale(-6*dy, 10, foldPrice, 4), evCapacity(-6*dy, "a", 10, 10*dy),
				evSale(-5*dy, "o1", 1, foldPrice), evCapacity(0, "a", 10, 10*dy)},
			want: foldFigures{Status: listed, SalesForm: "presale", PriceFen: foldPrice, Listed: 9, Capacity: 10, PresaleCommitted: 1,
				OpenOrders: 1, LateOrders: 1, ExposureFen: 990},
			alerts: []alertFigure{{Kind: projections.ShipLate, OrderID: "o1", UnitsShort: 1, ExposureFen: 990}},
		},
		{
			name:   "an order not yet due is not late",
			events: []ledger.Event{evListSpot(-30*hr, 10, foldPrice, 48), evSale(-28*hr, "o1", 2, foldPrice), evRestock(0, 1)},
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 8, OnHand: 11, Committed: 2,
				OpenOrders: 1},
		},
		{
			name: "shipment resolves ship_late",
			events: []ledger.Event{evListSpot(-30*hr, 10, foldPrice, 24), evSale(-28*hr, "o1", 2, foldPrice), evRestock(0, 1),
				evShip(time.Minute, "o1")},
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 8, OnHand: 9},
		},
		{
			name: "cancel resolves ship_late",
			events: []ledger.Event{evListSpot(-30*hr, 10, foldPrice, 24), evSale(-28*hr, "o1", 2, foldPrice), evRestock(0, 1),
				evCancel(time.Minute, "o1")},
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 10, OnHand: 11},
		},
		{
			name:   "a sale arriving after its promise passed is late at once",
			events: []ledger.Event{evListSpot(-50*hr, 10, foldPrice, 24), evRestock(0, 1), evSale(-30*hr, "o1", 1, foldPrice)},
			want: foldFigures{Status: listed, SalesForm: "spot", PriceFen: foldPrice, Listed: 9, OnHand: 11, Committed: 1,
				OpenOrders: 1, LateOrders: 1, ExposureFen: 990},
			alerts: []alertFigure{{Kind: projections.ShipLate, OrderID: "o1", UnitsShort: 1, ExposureFen: 990}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFoldRun(t)
			r.applyAll(tt.events...)
			checkSKU(t, r.sku(foldSKU), tt.want, tt.alerts)
		})
	}
}

// TestFoldRefusesListingChange: while listed, a listing may not change the
// sales form or the ship promise; the state stays as it was. After a
// delisting the same listing is accepted.
func TestFoldRefusesListingChange(t *testing.T) {
	tests := []struct {
		name          string
		first, change ledger.Event
	}{
		{"spot to presale", evListSpot(-10*hr, 3, 25800, 48), evListPresale(-9*hr, 3, 25800, 10)},
		{"presale to spot", evListPresale(-10*hr, 3, 25800, 10), evListSpot(-9*hr, 3, 25800, 48)},
		{"spot 48h to 24h", evListSpot(-10*hr, 3, 25800, 48), evListSpot(-9*hr, 3, 25800, 24)},
		{"spot 48h to 72h", evListSpot(-10*hr, 3, 25800, 48), evListSpot(-9*hr, 3, 25800, 72)},
		{"presale 10 days to 15", evListPresale(-10*hr, 3, 25800, 10), evListPresale(-9*hr, 3, 25800, 15)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFoldRun(t)
			r.applyAll(tt.first, evSale(-9*hr-30*time.Minute, "o1", 1, 25800))
			s := r.sku(foldSKU)
			before, beforeAlerts, beforeOrders := s.View(), openAlertFigures(s), len(s.Lines)

			changes, err := r.try(tt.change)
			if !errors.Is(err, projections.ErrRefused) {
				t.Fatalf("changing listing while listed: err = %v, want ErrRefused", err)
			}
			if len(changes) != 0 {
				t.Errorf("refused listing returned alert changes %v", changes)
			}
			if after := s.View(); !reflect.DeepEqual(after, before) {
				t.Errorf("refused listing changed the view:\n got %+v\nwant %+v", after, before)
			}
			if got := openAlertFigures(s); !slices.Equal(got, beforeAlerts) {
				t.Errorf("refused listing changed alerts: got %v, want %v", got, beforeAlerts)
			}
			if len(s.Lines) != beforeOrders {
				t.Errorf("refused listing changed orders")
			}

			// Delist, then the same listing is accepted and sales use the new promise.
			r.apply(evDelist(-8 * hr))
			change := tt.change
			change.At = foldT0.Add(-7 * hr)
			r.apply(change)
			v := s.View()
			if v.Status != projections.StatusListed || v.SalesForm != change.SalesForm ||
				v.ShipWithinHours != change.ShipWithinHours || v.ShipWithinDays != change.ShipWithinDays {
				t.Errorf("after delisting, relisting gave status %s form %s hours %d days %d; want listed %s %d %d",
					v.Status, v.SalesForm, v.ShipWithinHours, v.ShipWithinDays, change.SalesForm, change.ShipWithinHours, change.ShipWithinDays)
			}
			r.apply(evSale(-6*hr, "o2", 1, 25800))
			o2, o1 := s.Lines["o2"], s.Lines["o1"]
			wantDue, _ := ledger.ShipDue(foldT0.Add(-6*hr), change.SalesForm, change.ShipWithinHours, change.ShipWithinDays)
			if o2 == nil || o2.SalesForm != change.SalesForm || !o2.ShipBy.Equal(wantDue) {
				t.Errorf("sale after relisting: order %+v, want form %s due %s", o2, change.SalesForm, wantDue)
			}
			// The earlier order keeps the form and promise it was sold under.
			firstDue, _ := ledger.ShipDue(foldT0.Add(-9*hr-30*time.Minute), tt.first.SalesForm, tt.first.ShipWithinHours, tt.first.ShipWithinDays)
			if o1 == nil || o1.SalesForm != tt.first.SalesForm || !o1.ShipBy.Equal(firstDue) {
				t.Errorf("earlier order after relisting: %+v, want form %s due %s", o1, tt.first.SalesForm, firstDue)
			}
		})
	}
}

func TestFoldRefusesAnotherSKU(t *testing.T) {
	s := projections.NewSKU(foldShop, foldSKU)
	for _, e := range []ledger.Event{
		{ID: foldEventID(1), Type: ledger.Restock, Shop: foldShop, SKU: "other", At: foldT0, Qty: ledger.Int64(1)},
		{ID: foldEventID(1), Type: ledger.Restock, Shop: "other-shop", SKU: foldSKU, At: foldT0, Qty: ledger.Int64(1)},
	} {
		before := s.View()
		if _, err := s.Apply(1, &e); !errors.Is(err, projections.ErrRefused) {
			t.Errorf("event of %s/%s applied to %s/%s: err = %v, want ErrRefused", e.Shop, e.SKU, foldShop, foldSKU, err)
		}
		if !reflect.DeepEqual(s.View(), before) {
			t.Errorf("refused event changed the view")
		}
	}
}

// TestFoldRedelivery: a sequence at or below LastSeq changes nothing.
func TestFoldRedelivery(t *testing.T) {
	r := newFoldRun(t)
	r.applyAll(evListSpot(-10*hr, 10, foldPrice, 48), evSale(-9*hr, "o1", 2, foldPrice), evRecount(-8*hr, 1))
	s := r.sku(foldSKU)
	before, beforeAlerts := s.View(), openAlertFigures(s)
	if before.LastSeq != 3 {
		t.Fatalf("last_seq = %d, want 3", before.LastSeq)
	}
	redelivered := []struct {
		seq uint64
		e   ledger.Event
	}{
		{3, evRecount(-8*hr, 1)},               // the last event again
		{2, evSale(-9*hr, "o1", 2, foldPrice)}, // an earlier one again
		{2, evSale(-9*hr, "o9", 5, foldPrice)}, // any event at an old sequence
		{1, evRestock(-1*hr, 100)},
		{3, evCancel(-1*hr, "o1")},
		{3, evListPresale(-1*hr, 1, foldPrice, 10)}, // would be refused, but is a no-op first
	}
	for _, rd := range redelivered {
		e := rd.e
		e.Shop, e.SKU, e.ID = foldShop, foldSKU, foldEventID(rd.seq)
		changes, err := s.Apply(rd.seq, &e)
		if err != nil || len(changes) != 0 {
			t.Errorf("redelivered %s at seq %d: changes %v, err %v; want none", e.Type, rd.seq, changes, err)
		}
		if got := s.View(); !reflect.DeepEqual(got, before) {
			t.Errorf("redelivered %s at seq %d changed the view:\n got %+v\nwant %+v", e.Type, rd.seq, got, before)
		}
		if got := openAlertFigures(s); !slices.Equal(got, beforeAlerts) {
			t.Errorf("redelivered %s at seq %d changed alerts: %v", e.Type, rd.seq, got)
		}
	}
}

// TestFoldSaleOfNeverListedSKU: the order is spot with no promise, so it is
// never late.
func TestFoldSaleOfNeverListedSKU(t *testing.T) {
	r := newFoldRun(t)
	r.apply(evSale(-9*hr, "o1", 2, foldPrice))
	s := r.sku(foldSKU)
	if s.Status != projections.StatusUnlisted {
		t.Errorf("status = %s, want unlisted", s.Status)
	}
	open, _ := s.OpenLines()
	if len(open) != 1 {
		t.Fatalf("open orders = %d, want 1", len(open))
	}
	if o := open[0]; o.SalesForm != ledger.Spot || !o.ShipBy.IsZero() || o.Qty != 2 || o.UnitPriceFen != foldPrice {
		t.Errorf("order = %+v, want spot, qty 2 at %d, no due time", o, foldPrice)
	}
	if changes := s.Advance(foldT0.Add(1000 * dy)); len(changes) != 0 {
		t.Errorf("Advance far ahead: %v, want no change (no promise)", changes)
	}
	if v := s.View(); v.LateOrders != 0 {
		t.Errorf("late_orders = %d, want 0", v.LateOrders)
	}
}

// TestFoldShipLateByAdvance: time passing without events makes orders late.
func TestFoldShipLateByAdvance(t *testing.T) {
	r := newFoldRun(t)
	r.applyAll(evListSpot(-30*hr, 10, foldPrice, 24), evSale(-28*hr, "o1", 2, foldPrice), evSale(-27*hr, "o2", 1, 100000))
	s := r.sku(foldSKU)
	if changes := s.Advance(foldT0.Add(-5 * hr)); len(changes) != 0 {
		t.Fatalf("Advance before any promise: %v, want nothing", changes)
	}
	changes := s.Advance(foldT0.Add(-3*hr - 30*time.Minute)) // o1 due -4h, o2 due -3h
	if len(changes) != 1 {
		t.Fatalf("Advance past o1's promise: %d changes %v, want 1", len(changes), changes)
	}
	a := changes[0]
	if a.Kind != projections.ShipLate || a.OrderID != "o1" || a.State != projections.AlertOpen ||
		a.UnitsShort != 2 || a.ExposureFen != 1980 || a.Seq != 2 || a.Rev != 1 ||
		!a.RaisedAt.Equal(foldT0.Add(-4*hr)) || a.ID == "" || a.Shop != foldShop || a.SKU != foldSKU {
		t.Errorf("ship_late = %+v, want o1, open, 2 units, exposure 1980, seq 2 (its sale), rev 1, raised at its due time", a)
	}
	if v := s.View(); v.LateOrders != 1 || v.ExposureFen != 1980 {
		t.Errorf("late_orders %d exposure %d, want 1 and 1980", v.LateOrders, v.ExposureFen)
	}
	if again := s.Advance(foldT0.Add(-3*hr - 30*time.Minute)); len(again) != 0 {
		t.Errorf("Advance to the same time again: %v, want nothing", again)
	}
	if back := s.Advance(foldT0.Add(-20 * hr)); len(back) != 0 {
		t.Errorf("Advance back in time: %v, want nothing", back)
	}
	if !s.Clock.Equal(foldT0.Add(-3*hr - 30*time.Minute)) {
		t.Errorf("clock = %s, went back", s.Clock)
	}
	changes = s.Advance(foldT0)
	if len(changes) != 1 || changes[0].OrderID != "o2" || changes[0].ExposureFen != 3000 || changes[0].UnitsShort != 1 {
		t.Fatalf("Advance past o2's promise: %v, want ship_late o2 with the 3000 ceiling", changes)
	}
	late := changes[0]

	changes = r.apply(evShip(time.Minute, "o2"))
	got, ok := findChange(changes, projections.ShipLate)
	if !ok || got.ID != late.ID || got.State != projections.AlertResolved || got.ResolvedAt == nil ||
		!got.ResolvedAt.Equal(foldT0.Add(time.Minute)) || got.Rev != 2 || got.UpdatedSeq != 4 {
		t.Errorf("shipment of a late order: change %+v, want ship_late %s resolved at +1m, rev 2, updated_seq 4", got, late.ID)
	}
	changes = r.apply(evCancel(2*time.Minute, "o1"))
	if got, ok := findChange(changes, projections.ShipLate); !ok || got.OrderID != "o1" || got.State != projections.AlertResolved {
		t.Errorf("cancel of a late order: change %+v, want ship_late o1 resolved", got)
	}
	checkSKU(t, s, foldFigures{Status: projections.StatusListed, SalesForm: "spot", PriceFen: foldPrice, Listed: 9, OnHand: 9}, nil)
}

// TestFoldShipLateByEventTime: a shipment that comes after the promise
// leaves no ship_late open; if the fold reports the lateness on the way (time
// passed before the shipment), it resolves that same alert.
func TestFoldShipLateByEventTime(t *testing.T) {
	r := newFoldRun(t)
	r.applyAll(evListSpot(-30*hr, 10, foldPrice, 24), evSale(-28*hr, "o1", 2, foldPrice))
	changes := r.apply(evShip(0, "o1"))
	opened := make(map[string]bool)
	for _, c := range changes {
		if c.Kind != projections.ShipLate {
			t.Errorf("late shipment changed %s", c.Kind)
			continue
		}
		switch c.State {
		case projections.AlertOpen:
			opened[c.ID] = true
		case projections.AlertResolved:
			if !opened[c.ID] {
				t.Errorf("resolved ship_late %s that was never raised", c.ID)
			}
			delete(opened, c.ID)
		}
	}
	if len(opened) != 0 {
		t.Errorf("ship_late left open by a shipment: %v", opened)
	}
	checkSKU(t, r.sku(foldSKU), foldFigures{Status: projections.StatusListed, SalesForm: "spot", PriceFen: foldPrice, Listed: 8, OnHand: 8}, nil)
}

// TestAlertIdentity: an update keeps the id and bumps rev; a resolve closes
// the same alert; raising again after a resolve makes a new alert.
func TestAlertIdentity(t *testing.T) {
	r := newFoldRun(t)
	r.apply(evListSpot(-10*hr, 10, foldPrice, 48))

	changes := r.apply(evStockSet(-9*hr, 12))
	raised, ok := findChange(changes, projections.PhantomStock)
	if !ok || raised.State != projections.AlertOpen || raised.Rev != 1 || raised.Seq != 2 || raised.UpdatedSeq != 2 ||
		raised.UnitsShort != 2 || raised.ExposureFen != 2*2970 || raised.ID == "" || raised.ResolvedAt != nil ||
		!raised.RaisedAt.Equal(foldT0.Add(-9*hr)) || raised.Message == "" {
		t.Fatalf("raised = %+v, want open phantom_stock rev 1 seq 2, 2 units, 5940", raised)
	}

	changes = r.apply(evStockSet(-8*hr, 14))
	updated, ok := findChange(changes, projections.PhantomStock)
	if !ok || updated.ID != raised.ID || updated.Rev != 2 || updated.Seq != 2 || updated.UpdatedSeq != 3 ||
		updated.UnitsShort != 4 || updated.ExposureFen != 4*2970 || updated.State != projections.AlertOpen ||
		!updated.RaisedAt.Equal(raised.RaisedAt) {
		t.Fatalf("updated = %+v, want id %s rev 2 seq 2 updated_seq 3, 4 units", updated, raised.ID)
	}

	if changes = r.apply(evStockSet(-7*hr, 14)); len(changes) != 0 {
		t.Errorf("same figures again: changes %v, want none", changes)
	}

	changes = r.apply(evStockSet(-6*hr, 10))
	resolved, ok := findChange(changes, projections.PhantomStock)
	if !ok || resolved.ID != raised.ID || resolved.State != projections.AlertResolved || resolved.Rev != 3 ||
		resolved.UpdatedSeq != 5 || resolved.ResolvedAt == nil || !resolved.ResolvedAt.Equal(foldT0.Add(-6*hr)) {
		t.Fatalf("resolved = %+v, want id %s resolved at -6h rev 3", resolved, raised.ID)
	}
	if _, open := r.sku(foldSKU).Alerts[string(projections.PhantomStock)]; open || len(openAlertFigures(r.sku(foldSKU))) != 0 {
		t.Errorf("resolved alert still open")
	}

	changes = r.apply(evStockSet(-5*hr, 11))
	again, ok := findChange(changes, projections.PhantomStock)
	if !ok || again.ID == raised.ID || again.Rev != 1 || again.Seq != 6 || again.State != projections.AlertOpen {
		t.Fatalf("raised again = %+v, want a new id (not %s), rev 1, seq 6", again, raised.ID)
	}
}

// TestAlertIDsDeterministic: folding the same events twice gives the same
// alert changes, ids included; another SKU gets other ids.
func TestAlertIDsDeterministic(t *testing.T) {
	events := []ledger.Event{
		evListSpot(-30*hr, 10, foldPrice, 24), evSale(-28*hr, "o1", 4, foldPrice), evSale(-27*hr, "o2", 4, foldPrice),
		evRecount(-20*hr, 5), evStockSet(-19*hr, 6), evRestock(-18*hr, 1), evRecount(-17*hr, 6),
		evListSpot(-16*hr, 3, foldPrice, 24), evShip(-1*hr, "o1"), evRestock(0, 10),
	}
	fold := func(sku string) []projections.Alert {
		r := newFoldRun(t)
		var changes []projections.Alert
		for _, e := range events {
			changes = append(changes, r.apply(withSKU(e, sku))...)
		}
		return append(changes, r.sku(sku).Advance(foldT0.Add(30*dy))...)
	}
	first, second := fold(foldSKU), fold(foldSKU)
	if len(first) < 6 {
		t.Fatalf("only %d alert changes; the test wants a richer history", len(first))
	}
	if !reflect.DeepEqual(first, second) {
		t.Errorf("two identical folds differ:\n%+v\n%+v", first, second)
	}
	ids := make(map[string]bool)
	for _, a := range first {
		ids[a.ID] = true
	}
	for _, a := range fold("sku-2") {
		if ids[a.ID] {
			t.Errorf("alert id %s of sku-2 also used by %s", a.ID, foldSKU)
		}
	}
}

func TestLateCompensationFen(t *testing.T) {
	tests := []struct{ value, want int64 }{
		{1, 500},
		{4999, 500},
		{5000, 500},
		{5009, 500},   // 500.9 rounded down
		{5019, 501},   // 501.9 rounded down
		{12345, 1234}, // middle, rounded down
		{29999, 2999},
		{30000, 3000},
		{30010, 3000}, // 3001 clamped
		{100000, 3000},
		{ledger.MaxQty * ledger.MaxPriceFen, 3000},
	}
	for _, tt := range tests {
		if got := projections.LateCompensationFen(tt.value); got != tt.want {
			t.Errorf("LateCompensationFen(%d) = %d, want %d", tt.value, got, tt.want)
		}
	}
}

func TestUnshippedCompensationFen(t *testing.T) {
	tests := []struct{ value, want int64 }{
		{1, 500},
		{1666, 500}, // 499.8
		{1667, 500}, // 500.1 rounded down
		{1670, 501},
		{1673, 501},    // 501.9 rounded down
		{12345, 3703},  // 3703.5 rounded down
		{9900, 2970},   // middle
		{66666, 19999}, // 19999.8 rounded down
		{66667, 20000},
		{66670, 20000}, // 20001 clamped
		{100000, 20000},
		{ledger.MaxQty * ledger.MaxPriceFen, 20000}, // the largest order value: no overflow
	}
	for _, tt := range tests {
		if got := projections.UnshippedCompensationFen(tt.value); got != tt.want {
			t.Errorf("UnshippedCompensationFen(%d) = %d, want %d", tt.value, got, tt.want)
		}
	}
}

// TestViewExposure: each open order is counted once, at the larger charge
// it risks, plus the phantom units; spot and presale orders are served from
// their own supply.
func TestViewExposure(t *testing.T) {
	t.Run("late and unserved counts once as unshipped", func(t *testing.T) {
		r := newFoldRun(t)
		r.applyAll(evListSpot(-30*hr, 10, foldPrice, 24), evSale(-28*hr, "o1", 2, foldPrice), evRecount(0, 1))
		// alerts: ship_late 1980, oversold 5940, phantom 8 × 2970; the view
		// counts o1 once (5940), not 5940 + 1980.
		checkSKU(t, r.sku(foldSKU), foldFigures{Status: projections.StatusListed, SalesForm: "spot", PriceFen: foldPrice,
			Listed: 8, OnHand: 1, Committed: 2, OpenOrders: 1, LateOrders: 1, ExposureFen: 5940 + 8*2970},
			[]alertFigure{
				{Kind: projections.ShipLate, OrderID: "o1", UnitsShort: 2, ExposureFen: 1980},
				{Kind: projections.Oversold, UnitsShort: 1, ExposureFen: 5940},
				{Kind: projections.PhantomStock, UnitsShort: 8, ExposureFen: 8 * 2970},
				{Kind: projections.RecountMismatch, UnitsShort: 9},
			})
	})
	t.Run("spot and presale orders side by side", func(t *testing.T) {
		r := newFoldRun(t)
		r.applyAll(evListSpot(-30*hr, 10, foldPrice, 24), evSale(-28*hr, "o1", 2, foldPrice), evDelist(-2*hr),
			evListPresale(-1*hr, 5, foldPrice, 10), evCapacity(-1*hr, "a", 2, 9*dy), evSale(0, "o2", 3, foldPrice))
		// o1 spot, served from 10, late: 1980. o2 presale, 3 past a capacity
		// of 2: unshipped 8910. listed 2 past capacity_left −1: 2 × 2970.
		s := r.sku(foldSKU)
		checkSKU(t, s, foldFigures{Status: projections.StatusListed, SalesForm: "presale", PriceFen: foldPrice,
			Listed: 2, OnHand: 10, Committed: 2, Capacity: 2, PresaleCommitted: 3, OpenOrders: 2, LateOrders: 1,
			ExposureFen: 1980 + 8910 + 2*2970},
			[]alertFigure{
				{Kind: projections.ShipLate, OrderID: "o1", UnitsShort: 2, ExposureFen: 1980},
				{Kind: projections.CapacityExceeded, UnitsShort: 1, ExposureFen: 8910},
				{Kind: projections.PhantomStock, UnitsShort: 2, ExposureFen: 2 * 2970},
			})
		if v := s.View(); v.Available != 8 || v.CapacityLeft != -1 {
			t.Errorf("available %d capacity_left %d, want 8 and -1", v.Available, v.CapacityLeft)
		}
	})
	t.Run("orders served oldest first from a negative on_hand", func(t *testing.T) {
		r := newFoldRun(t)
		r.applyAll(evListSpot(-10*hr, 2, foldPrice, 48), evSale(-9*hr, "o1", 2, foldPrice), evShip(-8*hr, "o1"),
			evSale(-7*hr, "o2", 1, foldPrice), evShip(-6*hr, "o2"), evSale(-5*hr, "o3", 1, foldPrice))
		// on_hand 2 − 2 − 1 = −1 (shipped past the book): o3 cannot be served.
		checkSKU(t, r.sku(foldSKU), foldFigures{Status: projections.StatusListed, SalesForm: "spot", PriceFen: foldPrice,
			Listed: 0, OnHand: -1, Committed: 1, OpenOrders: 1, ExposureFen: 2970},
			[]alertFigure{{Kind: projections.Oversold, UnitsShort: 2, ExposureFen: 2970}})
	})
}

// TestFoldOutOfOrderEqualsInOrder: a cancel or a shipment that arrives before
// its sale leaves the same quantities as when it arrives after.
func TestFoldOutOfOrderEqualsInOrder(t *testing.T) {
	tests := []struct {
		name           string
		prefix         []ledger.Event
		sale, closeEvt ledger.Event
	}{
		{"spot cancel", []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48)}, evSale(-9*hr, "o1", 3, foldPrice), evCancel(-8*hr, "o1")},
		{"spot shipment", []ledger.Event{evListSpot(-10*hr, 10, foldPrice, 48)}, evSale(-9*hr, "o1", 3, foldPrice), evShip(-8*hr, "o1")},
		{"spot cancel past listed", []ledger.Event{evListSpot(-10*hr, 1, foldPrice, 48)}, evSale(-9*hr, "o1", 3, foldPrice), evCancel(-8*hr, "o1")},
		{"presale cancel", []ledger.Event{evListPresale(-10*hr, 10, foldPrice, 10), evCapacity(-10*hr, "a", 5, 8*dy)},
			evSale(-9*hr, "o1", 3, foldPrice), evCancel(-8*hr, "o1")},
		{"presale shipment", []ledger.Event{evListPresale(-10*hr, 10, foldPrice, 10), evCapacity(-10*hr, "a", 5, 8*dy)},
			evSale(-9*hr, "o1", 3, foldPrice), evShip(-8*hr, "o1")},
		{"never-listed cancel", nil, evSale(-9*hr, "o1", 3, foldPrice), evCancel(-8*hr, "o1")},
		{"never-listed shipment after a restock", []ledger.Event{evRestock(-10*hr, 5)},
			evSale(-9*hr, "o1", 3, foldPrice), evShip(-8*hr, "o1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inOrder, outOfOrder := newFoldRun(t), newFoldRun(t)
			inOrder.applyAll(append(slices.Clone(tt.prefix), tt.sale, tt.closeEvt)...)
			outOfOrder.applyAll(append(slices.Clone(tt.prefix), tt.closeEvt, tt.sale)...)
			want, got := figuresOf(inOrder.sku(foldSKU).View()), figuresOf(outOfOrder.sku(foldSKU).View())
			if got != want {
				t.Errorf("close before sale:\n got %+v\nwant %+v (close after sale)", got, want)
			}
			if g, w := openAlertFigures(outOfOrder.sku(foldSKU)), openAlertFigures(inOrder.sku(foldSKU)); !slices.Equal(g, w) {
				t.Errorf("close before sale: alerts %v, want %v", g, w)
			}
		})
	}
}

// TestFoldEarlyShipmentThenListing: a shipment seen before its sale on a
// never-listed SKU establishes the warehouse figure just as the in-order
// shipment does, so a later first spot listing does not overwrite on_hand.
func TestFoldEarlyShipmentThenListing(t *testing.T) {
	inOrder, outOfOrder := newFoldRun(t), newFoldRun(t)
	inOrder.applyAll(evSale(-9*hr, "o1", 1, foldPrice), evShip(-8*hr, "o1"), evListSpot(-7*hr, 5, foldPrice, 48))
	outOfOrder.applyAll(evShip(-8*hr, "o1"), evSale(-9*hr, "o1", 1, foldPrice), evListSpot(-7*hr, 5, foldPrice, 48))
	want, got := figuresOf(inOrder.sku(foldSKU).View()), figuresOf(outOfOrder.sku(foldSKU).View())
	if got != want {
		t.Errorf("shipment before sale, then first listing:\n got %+v\nwant %+v (shipment after sale)", got, want)
	}
}

// The five shared acceptance scenarios (../shared/scenarios), folded event by
// event with "now" at foldT0. Each expects the figures of its JSON file.

func TestScenarioFakeStock(t *testing.T) {
	r := newFoldRun(t)
	sku := "lipstick-red"
	r.apply(withSKU(evListSpot(-2*hr, 10, 9900, 48), sku))
	for i := range 10 {
		e := evSale(-1*hr, fmt.Sprintf("ks-1000%d", i), 1, 9900)
		e.LiveID = "live-0412"
		r.apply(withSKU(e, sku))
	}
	rc := evRecount(-50*time.Minute, 7)
	rc.CountedBy = "warehouse-a"
	r.apply(withSKU(rc, sku))
	r.apply(withSKU(evStockSet(-40*time.Minute, 5), sku))

	s := r.sku(sku)
	v := s.View()
	if v.Status != projections.StatusListed || v.SalesForm != "spot" || v.Listed != 5 || v.OnHand != 7 ||
		v.Committed != 10 || v.Available != -3 {
		t.Errorf("view %+v, want listed spot, listed 5, on_hand 7, committed 10, available -3", v)
	}
	checkSKU(t, s, foldFigures{Status: projections.StatusListed, SalesForm: "spot", PriceFen: 9900, Listed: 5, OnHand: 7,
		Committed: 10, OpenOrders: 10, ExposureFen: 8910 + 14850},
		[]alertFigure{
			{Kind: projections.Oversold, UnitsShort: 3, ExposureFen: 8910},
			{Kind: projections.PhantomStock, UnitsShort: 5, ExposureFen: 14850},
			{Kind: projections.RecountMismatch, UnitsShort: 3},
		})
}

func TestScenarioPresaleCapacity(t *testing.T) {
	r := newFoldRun(t)
	sku := "down-jacket-m"
	r.apply(withSKU(evListPresale(-3*hr, 200, 5900, 15), sku))
	r.apply(withSKU(evCapacity(-3*hr, "factory-a", 100, 10*dy), sku))
	r.apply(withSKU(evCapacity(-3*hr, "factory-b", 50, 12*dy), sku))
	r.apply(withSKU(evCapacity(-2*hr, "factory-a", 80, 10*dy), sku))
	for i := range 14 {
		r.apply(withSKU(evSale(-1*hr, fmt.Sprintf("ks-2000%02d", i), 10, 5900), sku))
	}
	s := r.sku(sku)
	v := s.View()
	if v.SalesForm != "presale" || v.Listed != 60 || v.Capacity != 130 || v.PresaleCommitted != 140 || v.CapacityLeft != -10 {
		t.Errorf("view %+v, want presale, listed 60, capacity 130, presale_committed 140, capacity_left -10", v)
	}
	checkSKU(t, s, foldFigures{Status: projections.StatusListed, SalesForm: "presale", PriceFen: 5900, Listed: 60,
		Capacity: 130, PresaleCommitted: 140, OpenOrders: 14, ExposureFen: 17700 + 106200},
		[]alertFigure{
			{Kind: projections.CapacityExceeded, UnitsShort: 10, ExposureFen: 17700},
			{Kind: projections.PhantomStock, UnitsShort: 60, ExposureFen: 106200},
		})
}

func TestScenarioZeroCancelShip(t *testing.T) {
	r := newFoldRun(t)
	sku := "phone-case"
	r.apply(withSKU(evListSpot(-3*hr, 5, 1990, 24), sku))
	r.apply(withSKU(evSale(-2*hr, "ks-3001", 2, 1990), sku))
	r.apply(withSKU(evSale(-2*hr, "ks-3002", 1, 1990), sku))
	r.apply(withSKU(evStockSet(-100*time.Minute, 0), sku))
	r.apply(withSKU(evCancel(-90*time.Minute, "ks-3001"), sku))
	r.apply(withSKU(evShip(-80*time.Minute, "ks-3002"), sku))
	r.apply(withSKU(evSale(-2*hr, "ks-3002", 1, 1990), sku))
	s := r.sku(sku)
	v := s.View()
	if v.Listed != 2 || v.OnHand != 4 || v.Committed != 0 || v.Available != 4 || v.OpenOrders != 0 {
		t.Errorf("view %+v, want listed 2, on_hand 4, committed 0, available 4, open_orders 0", v)
	}
	checkSKU(t, s, foldFigures{Status: projections.StatusListed, SalesForm: "spot", PriceFen: 1990, Listed: 2, OnHand: 4}, nil)
	s.Advance(foldT0)
	checkSKU(t, s, foldFigures{Status: projections.StatusListed, SalesForm: "spot", PriceFen: 1990, Listed: 2, OnHand: 4}, nil)
}

func TestScenarioLateAndClamps(t *testing.T) {
	r := newFoldRun(t)
	r.apply(withSKU(evListSpot(-40*hr, 10, 2000, 24), "hair-clip"))
	r.apply(withSKU(evListSpot(-90*hr, 1, 100000, 72), "gold-bracelet"))
	r.apply(withSKU(evSale(-30*hr, "ks-4001", 1, 2000), "hair-clip"))
	r.apply(withSKU(evSale(-80*hr, "ks-4002", 1, 100000), "gold-bracelet"))
	r.apply(withSKU(evRecount(-1*hr, 0), "gold-bracelet"))
	// The service sweeps due SKUs with its clock; here the clock is foldT0.
	for _, s := range r.skus {
		s.Advance(foldT0)
	}

	clip, bracelet := r.sku("hair-clip"), r.sku("gold-bracelet")
	if v := clip.View(); v.Committed != 1 || v.LateOrders != 1 {
		t.Errorf("hair-clip %+v, want committed 1, late_orders 1", v)
	}
	if v := bracelet.View(); v.OnHand != 0 || v.Committed != 1 || v.Available != -1 || v.LateOrders != 1 {
		t.Errorf("gold-bracelet %+v, want on_hand 0, committed 1, available -1, late_orders 1", v)
	}
	// hair-clip: 2000 fen late → 200, floored to 500.
	checkSKU(t, clip, foldFigures{Status: projections.StatusListed, SalesForm: "spot", PriceFen: 2000, Listed: 9, OnHand: 10,
		Committed: 1, OpenOrders: 1, LateOrders: 1, ExposureFen: 500},
		[]alertFigure{{Kind: projections.ShipLate, OrderID: "ks-4001", UnitsShort: 1, ExposureFen: 500}})
	// gold-bracelet: 100000 fen late → 10000, capped at 3000; unshipped →
	// 30000, capped at 20000; the view counts the order once, unshipped.
	checkSKU(t, bracelet, foldFigures{Status: projections.StatusListed, SalesForm: "spot", PriceFen: 100000, Listed: 0, OnHand: 0,
		Committed: 1, OpenOrders: 1, LateOrders: 1, ExposureFen: 20000},
		[]alertFigure{
			{Kind: projections.ShipLate, OrderID: "ks-4002", UnitsShort: 1, ExposureFen: 3000},
			{Kind: projections.Oversold, UnitsShort: 1, ExposureFen: 20000},
			{Kind: projections.RecountMismatch, UnitsShort: 1},
		})
}

func TestScenarioRulesAndBadInput(t *testing.T) {
	r := newFoldRun(t)
	listing := func(sku string, form ledger.SalesForm, hours, days int) ledger.Event {
		return ledger.Event{Type: ledger.Listing, Shop: foldShop, SKU: sku, At: foldT0, Title: "Tea set", PriceFen: 25800,
			Stock: ledger.Int64(3), SalesForm: form, ShipWithinHours: hours, ShipWithinDays: days}
	}
	saleOf := func(sku, order string, qty int64) ledger.Event {
		return ledger.Event{Type: ledger.Sale, Shop: foldShop, SKU: sku, At: foldT0, OrderID: order, Qty: ledger.Int64(qty), UnitPriceFen: 25800}
	}
	r.apply(listing("tea-set", ledger.Spot, 48, 0))

	// 409: the sales form changes only while delisted.
	if _, err := r.try(listing("tea-set", ledger.Presale, 0, 10)); !errors.Is(err, projections.ErrRefused) {
		t.Errorf("presale listing of a listed spot SKU: err = %v, want ErrRefused", err)
	}

	// 400: refused by validation; the fold never sees them.
	for _, bad := range []struct {
		events []ledger.Event
		field  string
	}{
		{[]ledger.Event{listing("tea-set", ledger.Spot, 36, 0)}, "ship_within_hours"},
		{[]ledger.Event{listing("tea-set-2", ledger.Presale, 0, 3)}, "ship_within_days"},
		{[]ledger.Event{listing("tea-set-2", ledger.Presale, 0, 91)}, "ship_within_days"},
		{[]ledger.Event{saleOf("tea.set", "ks-5001", 1)}, "sku"},
		{[]ledger.Event{saleOf("tea-set", "ks-5002", 1), saleOf("tea-set", "ks-5003", 0)}, "qty"},
	} {
		for i := range bad.events {
			bad.events[i].ID = foldEventID(uint64(900 + i))
		}
		err := ledger.ValidateBatch(bad.events)
		if !errors.Is(err, ledger.ErrInvalidEvent) {
			t.Errorf("%+v: err = %v, want invalid", bad.events, err)
			continue
		}
		if fields := foldFieldNames(err); !slices.Contains(fields, bad.field) {
			t.Errorf("%s: error names %v, want %s", bad.events[0].SKU, fields, bad.field)
		}
	}
	if _, err := ledger.DecodeEvents([]byte(`{"type":"sale",`)); err == nil {
		t.Errorf("truncated JSON decoded without error")
	}

	r.apply(withSKU(evDelist(0), "tea-set"))
	r.apply(listing("tea-set", ledger.Presale, 0, 10))
	if _, ok := r.skus["tea-set-2"]; ok {
		t.Errorf("tea-set-2 exists, want missing")
	}
	checkSKU(t, r.sku("tea-set"), foldFigures{Status: projections.StatusListed, SalesForm: "presale", PriceFen: 25800,
		Listed: 3, OnHand: 3, ExposureFen: 3 * 7740},
		[]alertFigure{{Kind: projections.PhantomStock, UnitsShort: 3, ExposureFen: 3 * 7740}})
}

func foldFieldNames(err error) []string {
	var out []string
	for _, fe := range ledger.FieldErrors(err) {
		out = append(out, fe.Field)
	}
	return out
}
