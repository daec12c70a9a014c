package projections_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"stockledger/ledger"
	"stockledger/projections"
)

// paceApply folds events (times as offsets from foldT0) into s, one stream
// sequence each, and returns the alert changes.
func paceApply(t *testing.T, s *projections.SKU, evs ...ledger.Event) []projections.Alert {
	t.Helper()
	var out []projections.Alert
	for _, e := range evs {
		e.Shop, e.SKU, e.ID = foldShop, foldSKU, uuid.NewString()
		if err := e.Validate(); err != nil {
			t.Fatalf("event %+v: %v", e, err)
		}
		as, err := s.Apply(s.LastSeq+1, &e)
		if err != nil {
			t.Fatalf("apply %s: %v", e.Type, err)
		}
		out = append(out, as...)
	}
	return out
}

func openKinds(s *projections.SKU) map[projections.AlertKind]bool {
	out := map[projections.AlertKind]bool{}
	for _, a := range s.Alerts {
		out[a.Kind] = true
	}
	return out
}

func TestPaceAndSelloutETA(t *testing.T) {
	s := projections.NewSKU(foldShop, foldSKU)
	s.Config = projections.FoldConfig{SelloutSoon: 15 * time.Minute}
	live := func(e ledger.Event) ledger.Event { e.LiveID = "live-1"; return e }
	paceApply(t, s, evListSpot(0, 100, 1000, 48))
	if v := s.View(); v.PacePerHour != 0 || v.SelloutETA != nil || len(v.SalesByMinute) != 0 {
		t.Fatalf("before any sale: pace %d, eta %v, minutes %v; want 0, nil, none", v.PacePerHour, v.SelloutETA, v.SalesByMinute)
	}
	changes := paceApply(t, s, live(evSale(0, "o1", 20, 1000)), live(evSale(time.Minute, "o2", 20, 1000)))
	// 40 units in the 5-minute window: 480 per hour; 60 left last 60×300/40 = 450 s.
	v := s.View()
	if got, want := v.PacePerHour, int64(480); got != want {
		t.Errorf("pace_per_hour = %d, want %d", got, want)
	}
	wantETA := foldT0.Add(time.Minute + 450*time.Second)
	if v.SelloutETA == nil || !v.SelloutETA.Equal(wantETA) {
		t.Errorf("sellout_eta = %v, want %v", v.SelloutETA, wantETA)
	}
	if v.LiveID != "live-1" {
		t.Errorf("live_id = %q, want live-1", v.LiveID)
	}
	wantMinutes := []projections.MinuteSales{{Minute: foldT0, Units: 20}, {Minute: foldT0.Add(time.Minute), Units: 20}}
	if len(v.SalesByMinute) != 2 || v.SalesByMinute[0] != wantMinutes[0] || v.SalesByMinute[1] != wantMinutes[1] {
		t.Errorf("sales_by_minute = %v, want %v", v.SalesByMinute, wantMinutes)
	}
	var raised bool
	for _, a := range changes {
		if a.Kind == projections.SelloutSoon && a.State == projections.AlertOpen {
			raised = true
		}
	}
	if !raised || !openKinds(s)[projections.SelloutSoon] {
		t.Fatalf("sellout_soon not raised with 7.5 minutes left and a 15-minute threshold; changes %v", changes)
	}

	// The same sale again changes nothing: counted once.
	paceApply(t, s, live(evSale(time.Minute, "o2", 20, 1000)))
	if got := s.View().PacePerHour; got != 480 {
		t.Errorf("pace after a re-sent sale = %d, want 480", got)
	}

	// A restock pushes the sellout far away: the alert resolves.
	changes = paceApply(t, s, evRestock(2*time.Minute, 1000))
	if openKinds(s)[projections.SelloutSoon] {
		t.Errorf("sellout_soon still open after a restock of 1000; changes %v", changes)
	}

	// Ten minutes later the early sales are out of the window.
	paceApply(t, s, evSale(12*time.Minute, "o3", 1, 1000))
	if got, want := s.View().PacePerHour, int64(12); got != want {
		t.Errorf("pace ten minutes on = %d, want %d (1 unit in 5 minutes)", got, want)
	}
}

func TestSelloutSoonDisabledByDefault(t *testing.T) {
	s := projections.NewSKU(foldShop, foldSKU)
	paceApply(t, s, evListSpot(0, 10, 1000, 48), evSale(0, "o1", 9, 1000))
	if s.View().SelloutETA == nil {
		t.Fatal("sellout_eta is nil with 1 unit left selling 9 in a minute")
	}
	if openKinds(s)[projections.SelloutSoon] {
		t.Error("sellout_soon raised with the zero FoldConfig")
	}
	s.Config.SelloutSoon = 10 * time.Minute
	paceApply(t, s, evSale(30*time.Second, "o2", 0+1, 1000))
	if s.View().SelloutETA != nil {
		t.Errorf("sellout_eta = %v with nothing left, want nil", s.View().SelloutETA)
	}
	if openKinds(s)[projections.SelloutSoon] {
		t.Error("sellout_soon open with nothing left: it warns before, oversold and phantom_stock take over after")
	}
}
