package projections_test

import (
	"fmt"
	"testing"
	"time"

	"stockledger/ledger"
	"stockledger/projections"
)

// TestSync: an instruction goes out when listed and sellable differ and
// either moved since the last; a clear when they agree again; nothing
// otherwise.
func TestSync(t *testing.T) {
	r := newFoldRun(t)
	s := r.sku(foldSKU)
	step := func(e ledger.Event, want string) {
		t.Helper()
		r.apply(e)
		in, ok := s.Sync()
		got := "none"
		switch {
		case ok && in.Clear:
			got = fmt.Sprintf("clear at %d", in.Seq)
		case ok:
			got = fmt.Sprintf("listed %d sellable %d delta %d seq %d key %s", in.Listed, in.Sellable, in.Delta, in.Seq, in.Key)
		}
		if got != want {
			t.Errorf("after %s: %s, want %s", e.Type, got, want)
		}
	}
	step(evListSpot(-5*hr, 10, foldPrice, 48), "none")
	step(evSale(-4*hr, "o1", 2, foldPrice), "none") // listed 8, sellable 8
	step(evRecount(-3*hr, 6), "listed 8 sellable 4 delta -4 seq 3 key sync:shop-demo:sku-1:3")
	step(evSale(-2*hr, "o2", 1, foldPrice), "listed 7 sellable 3 delta -4 seq 4 key sync:shop-demo:sku-1:4")
	step(evSafety(-2*hr, 0), "none") // no change: still 7 and 3
	// The read side answers the instruction published, not one keyed by
	// the later event that changed nothing.
	if in, ok := projections.InstructionOf(new(s.View())); !ok || in.Key != "sync:shop-demo:sku-1:4" || in.Delta != -4 {
		t.Errorf("InstructionOf after an event that changed nothing: %+v %v, want key sync:shop-demo:sku-1:4", in, ok)
	}
	step(evStockSet(-hr, 3), "clear at 6")
	step(evStockSet(-hr+time.Minute, 3), "none")
	step(evRecount(-hr+2*time.Minute, 4), "listed 3 sellable 1 delta -2 seq 8 key sync:shop-demo:sku-1:8")
	// Delisted, the SKU is not for sale on the platform: its instruction is
	// withdrawn, and none is given while it stays delisted.
	step(ledger.Event{Type: ledger.Delisting, At: foldT0.Add(-hr + 3*time.Minute)}, "clear at 9")
	step(evRecount(-hr+4*time.Minute, 0), "none")
	if in, ok := projections.InstructionOf(new(s.View())); ok {
		t.Errorf("InstructionOf a delisted SKU: %+v, want none", in)
	}

	// A SKU never listed is not on the platform: goods received for it
	// call for no instruction.
	r.apply(ledger.Event{Type: ledger.Restock, SKU: "sku-2", At: foldT0.Add(-hr), Qty: ledger.Int64(5)})
	if in, ok := r.sku("sku-2").Sync(); ok {
		t.Errorf("Sync of a SKU never listed, 5 on hand: %+v, want none", in)
	}
}

// TestShopHealth folds two SKUs of a shop into its health: fulfilment_risk
// opens when 5% of at least 20 open lines are late or unserved, moves with
// the whole percent, and resolves below it.
func TestShopHealth(t *testing.T) {
	r := newFoldRun(t)
	sh := projections.NewShop(foldShop)
	sh.Config = projections.DefaultFoldConfig()
	var changes []projections.Alert
	apply := func(e ledger.Event) {
		t.Helper()
		sku := e.SKU
		if sku == "" {
			sku = foldSKU
		}
		s := r.sku(sku)
		before := s.Contribution()
		r.apply(e)
		changes = append(changes, sh.Add(r.seq, e.At, before, s.Contribution())...)
	}
	apply(evListSpot(-50*hr, 100, foldPrice, 24))
	apply(withSKU(evListSpot(-50*hr, 1, foldPrice, 24), "b"))
	for i := range 19 {
		apply(evSale(-2*hr, fmt.Sprintf("o%d", i), 1, foldPrice))
	}
	if len(changes) != 0 || sh.Totals.Open != 19 {
		t.Fatalf("19 lines in time: %v, totals %+v", changes, sh.Totals)
	}
	// The 20th open line is of SKU b, sold 30 h ago with a 24 h promise:
	// late once b's clock passes its ship-by (an event of b an hour ago),
	// 1 of 20 = 5%.
	apply(withSKU(evSale(-30*hr, "late", 1, foldPrice), "b"))
	if len(changes) != 0 {
		t.Fatalf("b's clock at the sale: %+v", changes)
	}
	apply(withSKU(evStockSet(-hr, 0), "b"))
	if len(changes) != 1 || changes[0].Kind != projections.FulfilmentRisk || changes[0].State != projections.AlertOpen ||
		changes[0].SKU != "" || changes[0].UnitsShort != 1 {
		t.Fatalf("at 5%%: %+v", changes)
	}
	if got := sh.Totals; got.Open != 20 || got.Late != 1 || got.AtRisk != 1 || got.AtRiskPct() != 5 {
		t.Errorf("totals %+v, at risk %.1f%%", got, got.AtRiskPct())
	}
	// Two lines of b unserved (b has 1 unit): 2 of 21 is 9%: updated.
	apply(withSKU(evSale(-hr+time.Second, "big", 5, foldPrice), "b"))
	if last := changes[len(changes)-1]; len(changes) != 2 || last.Rev != 2 || last.UnitsShort != 2 {
		t.Fatalf("at 9%%: %+v", changes)
	}
	// Ship the late line and restock b: nothing at risk.
	apply(withSKU(evShip(-hr+time.Minute, "late"), "b"))
	apply(withSKU(evRestock(-hr+2*time.Minute, 10), "b"))
	if last := changes[len(changes)-1]; last.State != projections.AlertResolved || sh.Alert != nil {
		t.Fatalf("after shipping and restocking: %+v", changes)
	}
	if sh.Totals.AtRisk != 0 || sh.Totals.Open != 20 {
		t.Errorf("totals %+v", sh.Totals)
	}
}
