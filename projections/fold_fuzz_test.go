package projections_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"stockledger/ledger"
	"stockledger/projections"
)

// fuzzOpsMax bounds the operations one fuzz input decodes to.
const fuzzOpsMax = 300

// fuzzOp is one step of a fuzzed history: an event at a stream sequence
// (possibly a redelivery of an earlier one), or time passing (Advance).
type fuzzOp struct {
	advance bool
	now     time.Time
	sku     string
	seq     uint64
	event   ledger.Event
}

// fuzzReader hands out the fuzz bytes; past the end it gives zeros.
type fuzzReader struct {
	data []byte
	pos  int
}

func (r *fuzzReader) next() int {
	if r.pos >= len(r.data) {
		r.pos++
		return 0
	}
	b := r.data[r.pos]
	r.pos++
	return int(b)
}

func (r *fuzzReader) done() bool { return r.pos >= len(r.data) }

// decodeFuzzOps turns bytes into a deterministic history of valid events for
// one or two SKUs of one shop. Times mostly move forward from foldT0 − 10
// days, in steps of 10 minutes up to about a day and a half, and sometimes
// back (out-of-order arrival). Order ids, documents and receipts come from
// small pools so that re-sends, partial work, returns and promise changes
// find their lines (or come before them). Besides redeliveries (an earlier
// message at its own sequence), histories hold re-sends: an earlier event
// again at a new sequence, as a feed re-sends past the duplicate window.
func decodeFuzzOps(t *testing.T, data []byte) []fuzzOp {
	r := &fuzzReader{data: data}
	skus := []string{"sku-a"}
	if r.next()%2 == 1 {
		skus = append(skus, "sku-b")
	}
	at := foldT0.Add(-10 * dy)
	var seq uint64
	var ops []fuzzOp
	for !r.done() && len(ops) < fuzzOpsMax {
		kind := r.next()
		sku := skus[(kind>>5)%len(skus)]
		if step := r.next(); step < 40 {
			at = at.Add(-time.Duration(step) * 10 * time.Minute)
		} else {
			at = at.Add(time.Duration(step-40) * 10 * time.Minute)
		}
		a, b, c := r.next(), r.next(), r.next()
		e := ledger.Event{Shop: foldShop, SKU: sku, At: at}
		switch kind % 20 {
		case 12:
			ops = append(ops, fuzzOp{advance: true, sku: sku, now: at.Add(time.Duration(a) * time.Hour)})
			continue
		case 13, 19:
			// A redelivery of an earlier message at its own sequence (13),
			// or a re-send of an earlier event at a new one (19).
			var earlier []fuzzOp
			for _, op := range ops {
				if !op.advance && op.seq != 0 {
					earlier = append(earlier, op)
				}
			}
			if len(earlier) == 0 {
				continue
			}
			op := earlier[a%len(earlier)]
			if kind%20 == 19 {
				seq++
				op.seq = seq
			}
			ops = append(ops, op)
			continue
		default:
			fuzzEvent(&e, kind%20, a, b, c)
		}
		seq++
		e.ID = foldEventID(seq)
		if err := e.Validate(); err != nil {
			t.Fatalf("fuzz decoder made an invalid event %+v: %v", e, err)
		}
		ops = append(ops, fuzzOp{sku: sku, seq: seq, event: e})
	}
	return ops
}

// fuzzEvent fills e as an event of the given kind from three fuzz bytes.
func fuzzEvent(e *ledger.Event, kind, a, b, c int) {
	prices := []int64{100, 1990, 5900, 9900, 100000, 1_000_000}
	order := fmt.Sprintf("o%d", a%16)
	switch kind {
	case 0, 1:
		e.Type, e.Title, e.Stock, e.PriceFen = ledger.Listing, fmt.Sprintf("item %d", a), ledger.Int64(int64(b%30)), prices[c%len(prices)]
		if a%2 == 0 {
			e.SalesForm, e.ShipWithinHours = ledger.Spot, []int{24, 48, 72}[(a/2)%3]
			if a%8 < 6 {
				e.ShipWithinHours = 24 // mostly the same promise: relistings pass
			}
		} else {
			e.SalesForm, e.ShipWithinDays = ledger.Presale, []int{4, 10, 90}[(a/2)%3]
			if a%8 > 2 {
				e.ShipWithinDays = 4
			}
		}
	case 2:
		e.Type = ledger.Delisting
	case 3:
		e.Type, e.Stock = ledger.StockSet, ledger.Int64(int64(a%30))
	case 4:
		e.Type, e.Qty = ledger.Restock, ledger.Int64(int64(1+a%10))
		if b%2 == 0 {
			e.ReceiptID = fmt.Sprintf("gr-%d", b%8)
		}
	case 5, 6, 7:
		e.Type, e.OrderID, e.Qty, e.UnitPriceFen = ledger.Sale, order, ledger.Int64(int64(1+b%8)), prices[c%len(prices)]
		if c%4 == 0 {
			e.ShipBy = ledger.Time(e.At.Add(time.Duration(b%96) * time.Hour))
		}
	case 8:
		e.Type, e.OrderID = ledger.Cancel, order
	case 9:
		e.Type, e.OrderID = ledger.Shipment, order
	case 10:
		e.Type, e.Counted = ledger.Recount, ledger.Int64(int64(a%30))
	case 11:
		e.Type, e.Supplier, e.Qty = ledger.CapacityConfirmed, []string{"a", "b", "c"}[a%3], ledger.Int64(int64(b%40))
		e.DeliverBy = ledger.Time(e.At.Add(time.Duration(c%30) * dy))
	case 14:
		e.Type, e.OrderID, e.Qty, e.RefundID = ledger.Cancel, order, ledger.Int64(int64(1+b%3)), fmt.Sprintf("rf-%d", c%4)
	case 15:
		e.Type, e.OrderID, e.Qty, e.Waybill = ledger.Shipment, order, ledger.Int64(int64(1+b%3)), fmt.Sprintf("wb-%d", c%4)
	case 16:
		qty := int64(1 + b%2)
		e.Type, e.OrderID, e.Qty, e.ReturnID = ledger.Return, order, ledger.Int64(qty), fmt.Sprintf("rt-%d", c%3)
		if c%2 == 0 {
			e.Restocked = ledger.Int64(min(qty, int64(c%3)))
		}
	case 17:
		e.Type, e.OrderID, e.ShipBy = ledger.PromiseChanged, order, ledger.Time(e.At.Add(time.Duration(b%120)*time.Hour-24*time.Hour))
	case 18:
		e.Type, e.Qty = ledger.SafetyStockSet, ledger.Int64(int64(a%6))
	}
}

// fuzzFold applies ops to states (creating SKUs as they are named), checks
// the invariants after each, and returns the alert changes in order and the
// last stream sequence applied.
func fuzzFold(t *testing.T, states map[string]*projections.SKU, ops []fuzzOp) ([]projections.Alert, uint64) {
	t.Helper()
	return fuzzFoldFrom(t, nil, states, ops)
}

// fuzzFoldFrom is fuzzFold over states loaded from store (nil: none), which
// hold no closed lines nor applied restock keys: as the projector does, an
// event naming what the state does not hold first recalls it from the store.
func fuzzFoldFrom(t *testing.T, store projections.Store, states map[string]*projections.SKU, ops []fuzzOp) ([]projections.Alert, uint64) {
	t.Helper()
	var changes []projections.Alert
	var last uint64
	for i, op := range ops {
		s, ok := states[op.sku]
		if !ok {
			s = projections.NewSKU(foldShop, op.sku)
			states[op.sku] = s
		}
		if op.advance {
			changes = append(changes, s.Advance(op.now)...)
		} else {
			e := op.event
			if store != nil {
				if err := projections.RecallFor(context.Background(), store, s, &e); err != nil {
					t.Fatalf("op %d: recall for %s: %v", i, e.Key(), err)
				}
			}
			c, err := s.Apply(op.seq, &e)
			switch {
			case errors.Is(err, projections.ErrRefused) && refusable[e.Type]:
				// the relisting rule, or units past the line's; the state
				// is unchanged
			case err != nil:
				t.Fatalf("op %d: apply seq %d %s: %v", i, op.seq, e.Type, err)
			}
			changes = append(changes, c...)
			last = max(last, op.seq)
		}
		checkFoldInvariants(t, fmt.Sprintf("after op %d (seq %d)", i, op.seq), s)
	}
	return changes, last
}

// refusable are the types the fold may refuse: a listing that breaks the
// rule, a cancel, shipment or return of more units than the line has.
var refusable = map[ledger.Type]bool{ledger.Listing: true, ledger.Cancel: true, ledger.Shipment: true, ledger.Return: true}

// checkFoldInvariants checks what must hold of any folded SKU.
func checkFoldInvariants(t *testing.T, where string, s *projections.SKU) {
	t.Helper()
	v := s.View()
	if v.Available != v.OnHand-v.Committed {
		t.Fatalf("%s: available %d != on_hand %d − committed %d", where, v.Available, v.OnHand, v.Committed)
	}
	if v.CapacityLeft != v.Capacity-v.PresaleCommitted-v.PresaleShipped {
		t.Fatalf("%s: capacity_left %d != capacity %d − presale_committed %d − presale_shipped %d", where, v.CapacityLeft, v.Capacity, v.PresaleCommitted, v.PresaleShipped)
	}
	if v.Sellable != max(0, s.RealLimit()-v.SafetyStock) {
		t.Fatalf("%s: sellable %d, real limit %d, safety stock %d", where, v.Sellable, s.RealLimit(), v.SafetyStock)
	}
	if v.Listed < 0 || v.Committed < 0 || v.PresaleCommitted < 0 || v.PresaleShipped < 0 || v.ExposureFen < 0 || v.Capacity < 0 {
		t.Fatalf("%s: negative figure in %+v", where, v)
	}
	var units [2]int64
	var late, n int64
	spotLines, presaleLines := s.OpenLines()
	for form, lines := range [][]*projections.Line{spotLines, presaleLines} {
		for i, l := range lines {
			n++
			if l.State() != projections.LineOpen || l.Open() <= 0 || l.Shipped < 0 || l.Cancelled < 0 || l.Returned > l.Shipped {
				t.Fatalf("%s: line %+v in the open list", where, l)
			}
			if i > 0 && lines[i-1].ShipBy.After(l.ShipBy) && !l.ShipBy.IsZero() {
				t.Fatalf("%s: open lines out of ship-by order at %d", where, i)
			}
			units[form] += l.Open()
			if l.Late != (!l.ShipBy.IsZero() && !l.ShipBy.After(s.Clock)) {
				t.Fatalf("%s: line %s late %v with ship_by %s and clock %s", where, l.OrderID, l.Late, l.ShipBy, s.Clock)
			}
			if l.Late {
				late++
				if a, ok := s.Alerts["ship_late/"+l.OrderID]; !ok || a.UnitsShort != l.Open() {
					t.Fatalf("%s: late line %s (%d open) has ship_late %+v", where, l.OrderID, l.Open(), a)
				}
			}
		}
	}
	if units[0] != v.Committed || units[1] != v.PresaleCommitted {
		t.Fatalf("%s: open lines hold %d spot and %d presale units, view says committed %d, presale_committed %d",
			where, units[0], units[1], v.Committed, v.PresaleCommitted)
	}
	if v.OpenOrders != n || v.LateOrders != late {
		t.Fatalf("%s: open_orders %d late_orders %d, want %d and %d", where, v.OpenOrders, v.LateOrders, n, late)
	}
	if v.OpenAlerts != int64(len(s.Alerts)) {
		t.Fatalf("%s: open_alerts %d, %d alerts held", where, v.OpenAlerts, len(s.Alerts))
	}
	var shipLate int64
	for key, a := range s.Alerts {
		if a.State != projections.AlertOpen || a.ID == "" {
			t.Fatalf("%s: held alert %s is %+v", where, key, a)
		}
		if a.ExposureFen < 0 || a.UnitsShort <= 0 {
			t.Fatalf("%s: alert %s has units_short %d exposure %d", where, key, a.UnitsShort, a.ExposureFen)
		}
		if a.Kind == projections.ShipLate {
			shipLate++
		}
	}
	if shipLate != late {
		t.Fatalf("%s: %d ship_late alerts open, %d late orders", where, shipLate, late)
	}
	// The SKU-level alerts are open exactly when their condition holds, with
	// units_short the size of the gap.
	checkCond := func(kind projections.AlertKind, gap int64) {
		t.Helper()
		a, open := s.Alerts[string(kind)]
		switch {
		case gap > 0 && !open:
			t.Fatalf("%s: %s gap %d but no alert (view %+v)", where, kind, gap, v)
		case gap <= 0 && open:
			t.Fatalf("%s: %s open with no gap (view %+v)", where, kind, v)
		case open && a.UnitsShort != gap:
			t.Fatalf("%s: %s units_short %d, want %d", where, kind, a.UnitsShort, gap)
		}
	}
	checkCond(projections.Oversold, v.Committed-v.OnHand)
	checkCond(projections.CapacityExceeded, -v.CapacityLeft)
	phantom := int64(0)
	if v.Status == projections.StatusListed {
		phantom = v.Listed - v.Sellable
	}
	checkCond(projections.PhantomStock, phantom)
}

type fuzzAlertKey struct {
	ID          string
	Kind        projections.AlertKind
	OrderID     string
	UnitsShort  int64
	ExposureFen int64
	Rev         int
	Seq         uint64
}

func fuzzOpenAlerts(s *projections.SKU) []fuzzAlertKey {
	var out []fuzzAlertKey
	for _, a := range s.Alerts {
		out = append(out, fuzzAlertKey{a.ID, a.Kind, a.OrderID, a.UnitsShort, a.ExposureFen, a.Rev, a.Seq})
	}
	slices.SortFunc(out, func(a, b fuzzAlertKey) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

type fuzzLineKey struct {
	ID                                string
	Qty, Shipped, Cancelled, Returned int64
	Late                              bool
	ShipBy                            time.Time
	Seq                               uint64
}

func fuzzOpenLines(s *projections.SKU) []fuzzLineKey {
	var out []fuzzLineKey
	spot, presale := s.OpenLines()
	for _, l := range append(slices.Clone(spot), presale...) {
		out = append(out, fuzzLineKey{l.OrderID, l.Qty, l.Shipped, l.Cancelled, l.Returned, l.Late, l.ShipBy, l.Seq})
	}
	return out
}

// FuzzFoldInParts: folding a history at once gives the same state as folding
// its first part, storing and reloading the state (MemoryStore), and folding
// the rest.
func FuzzFoldInParts(f *testing.F) {
	f.Add([]byte{0, 0, 40, 0, 10, 3, 5, 40, 1, 2, 3, 5, 40, 2, 2, 3, 10, 50, 3, 0, 0, 9, 200, 1, 0, 0, 12, 200, 3, 0, 0})
	f.Add([]byte{1, 1, 40, 1, 30, 3, 11, 40, 0, 20, 0, 5, 40, 1, 5, 5, 21, 41, 1, 7, 2, 8, 60, 1, 0, 0, 6, 255, 2, 1, 1,
		0, 40, 2, 10, 3, 2, 40, 0, 0, 0, 0, 40, 3, 10, 3, 13, 40, 0, 0, 0, 10, 40, 4, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 5, 0, 9, 60, 1, 0, 0, 5, 10, 1, 2, 3, 8, 60, 2, 0, 0, 5, 5, 2, 3, 3, 5, 255, 3, 1, 3,
		12, 255, 48, 0, 0, 4, 40, 3, 0, 0, 10, 40, 1, 0, 0, 13, 40, 2, 0, 0})
	f.Add([]byte("listing, sales, a cancel, a recount and time passing, all decoded from text"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ops := decodeFuzzOps(t, data)
		if len(ops) == 0 {
			return
		}
		k := 0
		if len(data) > 0 {
			k = int(data[len(data)-1]) % (len(ops) + 1)
		}

		whole := make(map[string]*projections.SKU)
		wholeChanges, _ := fuzzFold(t, whole, ops)

		first := make(map[string]*projections.SKU)
		partChanges, last := fuzzFold(t, first, ops[:k])
		store := projections.NewMemoryStore()
		ctx := context.Background()
		b := &projections.Batch{Projector: "p", PrevSeq: 0, LastSeq: last, Alerts: partChanges}
		for _, name := range slices.Sorted(maps.Keys(first)) {
			b.SKUs = append(b.SKUs, first[name])
		}
		if err := projections.Commit(ctx, store, b); err != nil {
			t.Fatalf("commit the first %d ops: %v", k, err)
		}
		reloaded := make(map[string]*projections.SKU)
		for name := range first {
			s, err := store.LoadSKU(ctx, foldShop, name)
			if err != nil || s == nil {
				t.Fatalf("load %s: %v, %v", name, s, err)
			}
			if got, want := s.View(), first[name].View(); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s reloaded view differs:\n got %+v\nwant %+v", name, got, want)
			}
			reloaded[name] = s
		}
		restChanges, _ := fuzzFoldFrom(t, store, reloaded, ops[k:])
		partChanges = append(partChanges, restChanges...)

		// Time passes to the far future on both; late lines must match too.
		for name := range whole {
			wholeChanges = append(wholeChanges, whole[name].Advance(foldT0.Add(365*dy))...)
			if s, ok := reloaded[name]; ok {
				partChanges = append(partChanges, s.Advance(foldT0.Add(365*dy))...)
			}
		}
		if len(reloaded) != len(whole) {
			t.Fatalf("SKUs after the parts %v, at once %v", slices.Sorted(maps.Keys(reloaded)), slices.Sorted(maps.Keys(whole)))
		}
		for name, w := range whole {
			p := reloaded[name]
			checkFoldInvariants(t, "at the end", p)
			if got, want := p.View(), w.View(); !reflect.DeepEqual(got, want) {
				t.Errorf("%s view, split at %d of %d:\n in parts %+v\n at once  %+v", name, k, len(ops), got, want)
			}
			if got, want := fuzzOpenAlerts(p), fuzzOpenAlerts(w); !slices.Equal(got, want) {
				t.Errorf("%s open alerts, split at %d:\n in parts %+v\n at once  %+v", name, k, got, want)
			}
			if got, want := fuzzOpenLines(p), fuzzOpenLines(w); !slices.Equal(got, want) {
				t.Errorf("%s open lines, split at %d:\n in parts %+v\n at once  %+v", name, k, got, want)
			}
		}
		// The alert changes (what the projector publishes) are the same too,
		// once the final Advance calls are put in the same SKU order.
		if !reflect.DeepEqual(sortChanges(partChanges), sortChanges(wholeChanges)) {
			t.Errorf("alert changes differ, split at %d:\n in parts %+v\n at once  %+v", k, partChanges, wholeChanges)
		}
	})
}

// sortChanges orders alert changes stably by SKU, keeping each SKU's own
// order: SKUs fold independently, so only the per-SKU order is defined.
func sortChanges(as []projections.Alert) []projections.Alert {
	out := slices.Clone(as)
	slices.SortStableFunc(out, func(a, b projections.Alert) int { return cmp.Compare(a.SKU, b.SKU) })
	return out
}
