package projections_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"stockledger/ledger"
	"stockledger/projections"
)

// Builders of the contract v2 events.

func evPartCancel(at time.Duration, order string, qty int64, refund string) ledger.Event {
	return ledger.Event{Type: ledger.Cancel, At: foldT0.Add(at), OrderID: order, Qty: ledger.Int64(qty), RefundID: refund}
}

func evPartShip(at time.Duration, order string, qty int64, waybill string) ledger.Event {
	return ledger.Event{Type: ledger.Shipment, At: foldT0.Add(at), OrderID: order, Qty: ledger.Int64(qty), Waybill: waybill}
}

func evReturn(at time.Duration, order string, qty, restocked int64, id string) ledger.Event {
	return ledger.Event{Type: ledger.Return, At: foldT0.Add(at), OrderID: order, Qty: ledger.Int64(qty), ReturnID: id, Restocked: ledger.Int64(restocked)}
}

func evPromise(at time.Duration, order string, shipBy time.Duration) ledger.Event {
	return ledger.Event{Type: ledger.PromiseChanged, At: foldT0.Add(at), OrderID: order, ShipBy: ledger.Time(foldT0.Add(shipBy))}
}

func evSafety(at time.Duration, qty int64) ledger.Event {
	return ledger.Event{Type: ledger.SafetyStockSet, At: foldT0.Add(at), Qty: ledger.Int64(qty)}
}

func evSaleBy(at time.Duration, order string, qty, price int64, shipBy time.Duration) ledger.Event {
	e := evSale(at, order, qty, price)
	e.ShipBy = ledger.Time(foldT0.Add(shipBy))
	return e
}

// v2Figures are the contract v2 figures a test states exactly.
type v2Figures struct {
	Listed, OnHand, Committed, PresaleCommitted, PresaleShipped, CapacityLeft int64
	SafetyStock, Sellable, OpenOrders, LateOrders, ExposureFen                int64
}

func v2Of(v projections.View) v2Figures {
	return v2Figures{v.Listed, v.OnHand, v.Committed, v.PresaleCommitted, v.PresaleShipped, v.CapacityLeft,
		v.SafetyStock, v.Sellable, v.OpenOrders, v.LateOrders, v.ExposureFen}
}

func checkV2(t *testing.T, s *projections.SKU, want v2Figures, wantAlerts []alertFigure) {
	t.Helper()
	if got := v2Of(s.View()); got != want {
		t.Errorf("figures:\n got %+v\nwant %+v", got, want)
	}
	got := openAlertFigures(s)
	sortAlertFigures(wantAlerts)
	if len(got) != len(wantAlerts) {
		t.Errorf("open alerts:\n got %v\nwant %v", got, wantAlerts)
		return
	}
	for i := range got {
		if got[i] != wantAlerts[i] {
			t.Errorf("open alerts:\n got %v\nwant %v", got, wantAlerts)
			return
		}
	}
}

// TestFoldV2 folds the contract v2 additions one story at a time and states
// every figure and open alert after it. Prices: 9900 a unit, so a line of
// n units is worth n × 9900 (late compensation clamp(v/10, 500, 3000),
// unshipped clamp(3v/10, 500, 20000)).
func TestFoldV2(t *testing.T) {
	tests := []struct {
		name   string
		events []ledger.Event
		want   v2Figures
		alerts []alertFigure
	}{
		{"two lines of one order on two SKUs count apart",
			[]ledger.Event{evListSpot(-5*hr, 10, foldPrice, 48), evSale(-4*hr, "o1", 2, foldPrice),
				withSKU(evSale(-4*hr, "o1", 3, foldPrice), "sku-2"), evSale(-4*hr, "o1", 2, foldPrice)},
			v2Figures{Listed: 8, OnHand: 10, Committed: 2, CapacityLeft: 0, Sellable: 8, OpenOrders: 1}, nil},
		{"partial shipments and a partial refund; a waybill re-sent counts once",
			[]ledger.Event{evListSpot(-5*hr, 10, foldPrice, 48), evSale(-4*hr, "o1", 6, foldPrice),
				evPartShip(-3*hr, "o1", 2, "SF1"), evPartShip(-3*hr, "o1", 2, "SF1"), evPartCancel(-2*hr, "o1", 1, "RF1")},
			// listed 10 − 6 + 1 = 5; on_hand 10 − 2; committed 6 − 2 − 1 = 3
			v2Figures{Listed: 5, OnHand: 8, Committed: 3, Sellable: 5, OpenOrders: 1}, nil},
		{"the rest of the line ships with no qty; the line closes",
			[]ledger.Event{evListSpot(-5*hr, 10, foldPrice, 48), evSale(-4*hr, "o1", 6, foldPrice),
				evPartShip(-3*hr, "o1", 2, "SF1"), evShip(-2*hr, "o1"), evShip(-hr, "o1")},
			v2Figures{Listed: 4, OnHand: 4, Sellable: 4}, nil},
		{"a return puts restocked units on the shelf, listed unchanged",
			[]ledger.Event{evListSpot(-5*hr, 10, foldPrice, 48), evSale(-4*hr, "o1", 3, foldPrice), evShip(-3*hr, "o1"),
				evReturn(-2*hr, "o1", 2, 1, "RT1"), evReturn(-hr, "o1", 2, 1, "RT1")},
			v2Figures{Listed: 7, OnHand: 8, Sellable: 8}, nil},
		{"a shipment before its sale is applied when the sale comes, limited to the line",
			[]ledger.Event{evListSpot(-5*hr, 10, foldPrice, 48), evPartShip(-4*hr, "o1", 5, "SF1"), evSale(-3*hr, "o1", 3, foldPrice)},
			v2Figures{Listed: 7, OnHand: 7, Sellable: 7}, nil},
		{"an early refund and return wait for the sale",
			[]ledger.Event{evListSpot(-5*hr, 10, foldPrice, 48), evPartCancel(-4*hr, "o1", 1, "RF1"),
				evReturn(-4*hr, "o1", 1, 1, "RT1"), evSale(-3*hr, "o1", 3, foldPrice), evPartShip(-2*hr, "o1", 1, "SF1")},
			// The return found nothing shipped when the sale came: it changes nothing.
			v2Figures{Listed: 8, OnHand: 9, Committed: 1, Sellable: 8, OpenOrders: 1}, nil},
		{"lines are served by ship_by: a later promise waits",
			[]ledger.Event{evListSpot(-5*hr, 10, foldPrice, 48), evRecount(-5*hr, 2), evSaleBy(-4*hr, "late", 2, foldPrice, 40*hr),
				evSaleBy(-3*hr, "soon", 2, foldPrice, 10*hr)},
			// 2 on hand serve "soon" (due first); "late" is unserved: 5940.
			v2Figures{Listed: 6, OnHand: 2, Committed: 4, OpenOrders: 2, ExposureFen: 5940 + 6*2970},
			[]alertFigure{{projections.Oversold, "", 2, 5940}, {projections.PhantomStock, "", 6, 6 * 2970},
				{projections.RecountMismatch, "", 8, 0}}},
		{"ship_late counts the open units of a partly shipped line",
			[]ledger.Event{evListSpot(-60*hr, 10, foldPrice, 24), evSale(-50*hr, "o1", 4, foldPrice),
				evPartShip(-40*hr, "o1", 1, "SF1"), evRestock(-hr, 1)},
			v2Figures{Listed: 6, OnHand: 10, Committed: 3, Sellable: 7, OpenOrders: 1, LateOrders: 1, ExposureFen: 3000},
			[]alertFigure{{projections.ShipLate, "o1", 3, 3000}}},
		{"an approved delay moves the promise and resolves ship_late",
			[]ledger.Event{evListSpot(-60*hr, 10, foldPrice, 24), evSale(-50*hr, "o1", 1, foldPrice),
				evPromise(-10*hr, "o1", 20*hr), evPromise(-20*hr, "o1", -30*hr)},
			v2Figures{Listed: 9, OnHand: 10, Committed: 1, Sellable: 9, OpenOrders: 1}, nil},
		{"shipped presale units use capacity up",
			[]ledger.Event{evListPresale(-10*dy, 50, foldPrice, 15), evCapacity(-10*dy, "x", 50, 2*dy),
				evSale(-9*dy, "o1", 30, foldPrice), evSale(-9*dy, "o2", 20, foldPrice), evShip(-dy, "o1")},
			v2Figures{Listed: 0, PresaleCommitted: 20, PresaleShipped: 30, CapacityLeft: 0, OpenOrders: 1}, nil},
		{"a lot that delivers after the promise: capacity_late",
			[]ledger.Event{evListPresale(-3*dy, 40, 2900, 7), evCapacity(-2*dy, "slow", 40, 9*dy),
				evSale(-dy, "o1", 10, 2900), evCapacity(-20*hr, "fast", 5, 3*dy)},
			// fast serves 5 of o1 in time, slow the other 5 after its ship-by: late.
			v2Figures{Listed: 30, PresaleCommitted: 10, CapacityLeft: 35, Sellable: 35, OpenOrders: 1, ExposureFen: 2900},
			[]alertFigure{{projections.CapacityLate, "", 10, 2900}}},
		{"a stale stock_set, recount and delisting change nothing",
			[]ledger.Event{evListSpot(-5*hr, 30, foldPrice, 48), evDelist(-6 * hr), evStockSet(-hr, 12),
				evStockSet(-3*hr, 20), evRecount(-2*hr, 25), evRecount(-4*hr, 28)},
			v2Figures{Listed: 12, OnHand: 25, Sellable: 25},
			[]alertFigure{{projections.RecountMismatch, "", 5, 0}}},
		{"safety stock lowers sellable; listed above it is phantom",
			[]ledger.Event{evListSpot(-5*hr, 10, foldPrice, 48), evSafety(-hr, 4), evSafety(-2*hr, 0)},
			v2Figures{Listed: 10, OnHand: 10, SafetyStock: 4, Sellable: 6, ExposureFen: 4 * 2970},
			[]alertFigure{{projections.PhantomStock, "", 4, 4 * 2970}}},
		{"a restock receipt applies once; restocks without one by event",
			[]ledger.Event{evListSpot(-5*hr, 10, foldPrice, 48),
				{Type: ledger.Restock, At: foldT0.Add(-hr), Qty: ledger.Int64(5), ReceiptID: "GR1"},
				{Type: ledger.Restock, At: foldT0.Add(-hr), Qty: ledger.Int64(5), ReceiptID: "GR1"}, evRestock(-hr, 2)},
			v2Figures{Listed: 10, OnHand: 17, Sellable: 17}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFoldRun(t)
			r.applyAll(tt.events...)
			checkV2(t, r.sku(foldSKU), tt.want, tt.alerts)
			checkFoldInvariants(t, tt.name, r.sku(foldSKU))
		})
	}
}

// TestFoldRefusesUnitsPastTheLine: a shipment, refund or return of more units
// than the line has is refused and changes nothing; its key stays unused, so
// a corrected re-send of the same document applies.
func TestFoldRefusesUnitsPastTheLine(t *testing.T) {
	for _, bad := range []ledger.Event{
		evPartShip(-hr, "o1", 4, "SF1"),
		evPartCancel(-hr, "o1", 4, "SF1"),
		evReturn(-hr, "o1", 1, 1, "SF1"),
	} {
		t.Run(string(bad.Type), func(t *testing.T) {
			r := newFoldRun(t)
			r.applyAll(evListSpot(-5*hr, 10, foldPrice, 48), evSale(-4*hr, "o1", 3, foldPrice))
			s := r.sku(foldSKU)
			before := s.View()
			if _, err := r.try(bad); !errors.Is(err, projections.ErrRefused) {
				t.Fatalf("%s past the line: err %v, want ErrRefused", bad.Type, err)
			}
			if after := s.View(); !reflect.DeepEqual(after, before) {
				t.Fatalf("refused event changed the view:\n got %+v\nwant %+v", after, before)
			}
			fixed := bad
			fixed.Qty = ledger.Int64(1)
			if bad.Type == ledger.Return {
				r.apply(evShip(-2*hr, "o1"))
				fixed.Restocked = ledger.Int64(1)
			}
			r.apply(fixed)
			checkFoldInvariants(t, "after the corrected re-send", s)
			if reflect.DeepEqual(s.View(), before) {
				t.Errorf("the corrected %s changed nothing", bad.Type)
			}
		})
	}
}

// TestFoldResendAfterWindow: every type re-sent as a new message (a new
// stream sequence, as after the duplicate window) is applied once.
func TestFoldResendAfterWindow(t *testing.T) {
	events := []ledger.Event{
		evListSpot(-50*hr, 20, foldPrice, 48), evStockSet(-40*hr, 15), evSafety(-40*hr, 1),
		{Type: ledger.Restock, At: foldT0.Add(-39 * hr), Qty: ledger.Int64(4), ReceiptID: "GR1"},
		evRestock(-39*hr, 2), evRecount(-38*hr, 26), evSale(-30*hr, "o1", 5, foldPrice),
		evPartShip(-20*hr, "o1", 2, "SF1"), evPartCancel(-19*hr, "o1", 1, "RF1"),
		evReturn(-10*hr, "o1", 1, 1, "RT1"), evPromise(-9*hr, "o1", 30*hr), evShip(-5*hr, "o1"),
	}
	once, twice := newFoldRun(t), newFoldRun(t)
	once.applyAll(events...)
	for _, e := range events {
		seq, prepared := twice.prepare(e)
		if _, err := twice.sku(foldSKU).Apply(seq, &prepared); err != nil {
			t.Fatal(err)
		}
		// The same event, id and all, at a later sequence.
		twice.seq++
		if _, err := twice.sku(foldSKU).Apply(twice.seq, &prepared); err != nil {
			t.Fatal(err)
		}
	}
	got, want := twice.sku(foldSKU).View(), once.sku(foldSKU).View()
	got.LastSeq, want.LastSeq = 0, 0
	if v2Of(got) != v2Of(want) || got.OnHand != want.OnHand {
		t.Errorf("every event re-sent:\n got %+v\nwant %+v", v2Of(got), v2Of(want))
	}
}

// TestFoldResentSettingLaterAt: a setting re-sent long after, with its `at`
// moved past the settings that followed it (a feed that stamps a retry with
// the time of sending), is not applied again: its key was applied once.
func TestFoldResentSettingLaterAt(t *testing.T) {
	r := newFoldRun(t)
	r.applyAll(evListSpot(-50*hr, 20, foldPrice, 48), evRecount(-45*hr, 30))
	type pair struct{ first, second ledger.Event }
	for _, p := range []pair{
		{evStockSet(-40*hr, 15), evStockSet(-30*hr, 9)},
		{evSafety(-40*hr, 3), evSafety(-30*hr, 1)},
		{evRecount(-40*hr, 12), evRecount(-30*hr, 25)},
	} {
		seq, first := r.prepare(p.first)
		if _, err := r.sku(foldSKU).Apply(seq, &first); err != nil {
			t.Fatal(err)
		}
		r.apply(p.second)
		before := r.sku(foldSKU).View()
		resent := first
		resent.At = foldT0.Add(-hr)
		r.seq++
		if _, err := r.sku(foldSKU).Apply(r.seq, &resent); err != nil {
			t.Fatal(err)
		}
		after := r.sku(foldSKU).View()
		before.LastSeq, after.LastSeq, before.UpdatedAt, after.UpdatedAt = 0, 0, time.Time{}, time.Time{}
		if v2Of(after) != v2Of(before) {
			t.Errorf("%s re-sent with a later at:\n got %+v\nwant %+v", first.Type, v2Of(after), v2Of(before))
		}
	}
	if v := r.sku(foldSKU).View(); v.Listed != 9 || v.SafetyStock != 1 || v.OnHand != 25 {
		t.Errorf("listed %d safety %d on hand %d, want 9 1 25", v.Listed, v.SafetyStock, v.OnHand)
	}
}
