package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger/transport"
	"stockledger/projections"
)

// syncWait bounds each wait of the sync tests.
const syncWait = 20 * time.Second

// phantomSale lists 10 units of sku, sells 2 and recounts 5: the platform
// shows 8 where 3 are sellable, phantom_stock opens.
func phantomSale(t *testing.T, base, shop, sku string) {
	t.Helper()
	send := func(args ...string) {
		mustCtl(t, base, "", append([]string{"send", "-shop", shop, "-sku", sku}, args...)...)
	}
	send("-type", "listing", "-title", "Mat", "-price-fen", "4500", "-stock", "10", "-sales-form", "spot", "-ship-within-hours", "48")
	send("-type", "sale", "-order-id", "o1", "-qty", "2", "-unit-price-fen", "4500")
	send("-type", "recount", "-counted", "5")
}

// targetsBucket opens STOCK_SYNC_TARGETS on ledgerd's NATS.
func targetsBucket(t *testing.T, natsURL string) jetstream.KeyValue {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), transport.SyncTargetsBucket)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// waitTarget polls the bucket until the SKU's target is listed → sellable,
// and returns it; with listed == sellable it waits until there is none.
func waitTarget(t *testing.T, kv jetstream.KeyValue, shop, sku string, listed, sellable int64) projections.SyncInstruction {
	t.Helper()
	deadline := time.Now().Add(syncWait)
	for {
		var in projections.SyncInstruction
		e, err := kv.Get(t.Context(), transport.ViewKey(shop, sku))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
			if listed == sellable {
				return in
			}
		case err != nil:
			t.Fatal(err)
		default:
			if err := json.Unmarshal(e.Value(), &in); err != nil {
				t.Fatal(err)
			}
			if in.Listed == listed && in.Sellable == sellable && listed != sellable {
				return in
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("target of %s/%s: want listed %d, sellable %d within %s; last %+v (%v)", shop, sku, listed, sellable, syncWait, in, err)
		}
		<-time.After(20 * time.Millisecond)
	}
}

// lastInstruction reads the SKU's last instruction on the stream.
func lastInstruction(t *testing.T, natsURL, shop, sku string) projections.SyncInstruction {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(t.Context(), transport.SyncStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(t.Context(), transport.SyncSubject(shop, sku))
	if err != nil {
		t.Fatal(err)
	}
	var in projections.SyncInstruction
	if err := json.Unmarshal(m.Data, &in); err != nil {
		t.Fatal(err)
	}
	return in
}

// waitListed polls the SKU until its listed is want, and returns the view.
func waitListed(t *testing.T, base, shop, sku string, want int64) view {
	t.Helper()
	deadline := time.Now().Add(syncWait)
	for {
		var v view
		out := mustCtl(t, base, "", "sku", shop, sku, "-json")
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatal(err)
		}
		if v.Listed == want {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s: listed %d, want %d within %s", shop, sku, v.Listed, want, syncWait)
		}
		<-time.After(20 * time.Millisecond)
	}
}

// stockSets returns the ids of the SKU's stock_set events in its history.
func stockSets(t *testing.T, base, shop, sku string) []string {
	t.Helper()
	var r struct {
		Events []historyEntry `json:"events"`
	}
	if err := json.Unmarshal([]byte(mustCtl(t, base, "", "-json", "history", shop, sku)), &r); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range r.Events {
		var ev struct{ ID, Type string }
		if err := json.Unmarshal(e.Event, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type == "stock_set" {
			ids = append(ids, ev.ID)
		}
	}
	return ids
}

// TestSyncClosesPhantomStock: on a live sale whose recount leaves the
// platform showing 8 where 3 are sellable, stockctl shop shows the pending
// sync, stockctl sync -once posts the stock_set of the instruction (once,
// though the instruction is both a current target and on the stream), the
// SKU's listed equals sellable and phantom_stock resolves.
func TestSyncClosesPhantomStock(t *testing.T) {
	base, natsURL := startLedgerd(t)
	const shop, sku = "shop-sync", "mat"
	phantomSale(t, base, shop, sku)
	in := waitTarget(t, targetsBucket(t, natsURL), shop, sku, 8, 3)

	out := mustCtl(t, base, "", "shop", shop)
	for _, want := range []string{`(?m)^SKUs\s+1$`, `(?m)^open order lines\s+1$`, `(?m)^fulfilment_risk\s+none open$`,
		`(?m)^mat\s+listed\s+platform shows 8, should show 3 \(-5\)$`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("stockctl shop: want %s in\n%s", want, out)
		}
	}

	out = mustCtl(t, base, "", "sync", shop, "-once", "-nats-url", natsURL)
	applied := fmt.Sprintf("%s/%s: platform 8 -> 3 (instruction %s)", shop, sku, in.Key)
	if strings.Count(out, applied) != 1 {
		t.Errorf("sync -once: want %q once in\n%s", applied, out)
	}
	v := waitListed(t, base, shop, sku, 3)
	if v.Sellable != 3 {
		t.Errorf("after sync: listed %d, sellable %d; want both 3", v.Listed, v.Sellable)
	}
	var alerts struct {
		Alerts []alert `json:"alerts"`
	}
	js := mustCtl(t, base, "", "-json", "alerts", shop, "-state", "all", "-min-seq", fmt.Sprint(v.LastSeq))
	if err := json.Unmarshal([]byte(js), &alerts); err != nil {
		t.Fatal(err)
	}
	phantom := 0
	for _, a := range alerts.Alerts {
		if a.Kind == projections.PhantomStock {
			phantom++
			if a.State != projections.AlertResolved {
				t.Errorf("phantom_stock after sync: %s; want resolved", a.State)
			}
		}
	}
	if phantom != 1 {
		t.Errorf("%d phantom_stock alerts; want 1 (resolved):\n%s", phantom, js)
	}
	if got := stockSets(t, base, shop, sku); len(got) != 1 || got[0] != projections.SyncEventID(in.Key) {
		t.Errorf("stock_sets in the history %v; want one, id %s (from %s)", got, projections.SyncEventID(in.Key), in.Key)
	}
	out = mustCtl(t, base, "", "shop", shop, "-min-seq", fmt.Sprint(v.LastSeq))
	if !strings.Contains(out, "pending sync: none") {
		t.Errorf("stockctl shop after sync: want no pending sync:\n%s", out)
	}
}

// TestSyncModes: mode down leaves a raise alone; mode full applies it
// (from the current target: mode down's run acknowledged the instruction).
func TestSyncModes(t *testing.T) {
	base, natsURL := startLedgerd(t)
	const shop, sku = "shop-modes", "cup"
	mustCtl(t, base, "", "send", "-type", "listing", "-shop", shop, "-sku", sku, "-title", "Cup",
		"-price-fen", "1000", "-stock", "5", "-sales-form", "spot", "-ship-within-hours", "24")
	mustCtl(t, base, "", "send", "-type", "restock", "-shop", shop, "-sku", sku, "-qty", "5", "-receipt-id", "GR-1")
	kv := targetsBucket(t, natsURL)
	in := waitTarget(t, kv, shop, sku, 5, 10)

	out := mustCtl(t, base, "", "sync", shop, "-once", "-nats-url", natsURL)
	if want := fmt.Sprintf("%s/%s: platform left at 5, should show 10", shop, sku); !strings.Contains(out, want) {
		t.Errorf("sync -once (mode down): want %q in\n%s", want, out)
	}
	if got := stockSets(t, base, shop, sku); len(got) != 0 {
		t.Errorf("mode down posted stock_sets %v for a raise", got)
	}
	out = mustCtl(t, base, "", "-json", "sync", shop, "-once", "-mode", "full", "-nats-url", natsURL)
	var d syncDecision
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &d); err != nil ||
		d.Action != "applied" || d.Key != in.Key || d.Sellable != 10 || d.EventID != projections.SyncEventID(in.Key) {
		t.Errorf("sync -once -mode full -json: first line %+v (%v); want %s applied\n%s", d, err, in.Key, out)
	}
	waitListed(t, base, shop, sku, 10)
	waitTarget(t, kv, shop, sku, 0, 0)

	// Goods received for a product never listed: the platform has no figure
	// to raise, and the ledger gives no instruction for it. The restock of
	// the listed cup after it shows the plate's restock was committed (one
	// shop, one projector, stream order).
	mustCtl(t, base, "", "send", "-type", "restock", "-shop", shop, "-sku", "plate", "-qty", "4")
	mustCtl(t, base, "", "send", "-type", "restock", "-shop", shop, "-sku", sku, "-qty", "1", "-receipt-id", "GR-2")
	waitTarget(t, kv, shop, sku, 10, 11)
	if e, err := kv.Get(t.Context(), transport.ViewKey(shop, "plate")); err == nil {
		t.Errorf("target of the unlisted plate: %s, want none", e.Value())
	}
	out = mustCtl(t, base, "", "sync", shop, "-once", "-mode", "full", "-nats-url", natsURL)
	if strings.Contains(out, shop+"/plate") {
		t.Errorf("sync -once -mode full named the unlisted plate:\n%s", out)
	}
	if got := stockSets(t, base, shop, "plate"); len(got) != 0 {
		t.Errorf("stock_sets %v posted for an unlisted SKU", got)
	}
	if _, err := ctl(t, base, "", "sync", shop, "-mode", "up", "-nats-url", natsURL); err == nil || !strings.Contains(err.Error(), `-mode "up"`) {
		t.Errorf("sync -mode up: err %v; want the flag named", err)
	}
}

// runSync starts stockctl sync in the background and returns its output
// and a stop that interrupts it (as Ctrl-C does) and returns its error.
func runSync(t *testing.T, base string, args ...string) (*syncBuffer, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	buf := &syncBuffer{}
	done := make(chan error, 1)
	env := func(k string) string {
		if k == "STOCKCTL_ADDR" {
			return base
		}
		return ""
	}
	go func() { done <- run(ctx, append([]string{"sync"}, args...), env, strings.NewReader(""), buf) }()
	waitOutput(t, buf, "following stock.sync.")
	return buf, func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(syncWait):
			return fmt.Errorf("stockctl sync did not stop within %s", syncWait)
		}
	}
}

// TestSyncRestart: the adapter following a shop resumes after a restart
// where it stopped: the instruction applied before is not applied again,
// the one published while it was down is.
func TestSyncRestart(t *testing.T) {
	base, natsURL := startLedgerd(t)
	const shop, sku = "shop-restart", "mat"
	kv := targetsBucket(t, natsURL)
	out, stop := runSync(t, base, shop, "-nats-url", natsURL)
	phantomSale(t, base, shop, sku)
	waitOutput(t, out, "platform 8 -> 3 (instruction ")
	first := lastInstruction(t, natsURL, shop, sku)
	waitOutput(t, out, fmt.Sprintf("platform 8 -> 3 (instruction %s)", first.Key))
	waitListed(t, base, shop, sku, 3)
	if err := stop(); err != nil {
		t.Fatalf("first run: %v\n%s", err, out)
	}

	// While the adapter is down: a recount finds 2 units fewer.
	mustCtl(t, base, "", "send", "-type", "recount", "-shop", shop, "-sku", sku, "-counted", "3")
	second := waitTarget(t, kv, shop, sku, 3, 1)
	out2, stop2 := runSync(t, base, shop, "-nats-url", natsURL)
	waitOutput(t, out2, fmt.Sprintf("platform 3 -> 1 (instruction %s)", second.Key))
	waitListed(t, base, shop, sku, 1)
	if err := stop2(); err != nil {
		t.Fatalf("second run: %v\n%s", err, out2)
	}
	if strings.Contains(out2.String(), "platform 8 -> 3") {
		t.Errorf("the restarted adapter applied the first instruction again:\n%s", out2)
	}
	got := stockSets(t, base, shop, sku)
	if want := []string{projections.SyncEventID(first.Key), projections.SyncEventID(second.Key)}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("stock_sets in the history %v; want %v: each instruction once", got, want)
	}
}

// TestSyncPostedBefore: a run that posted an instruction's stock_set and
// stopped before the projector folded it leaves the instruction a current
// target; the next run finds the stock_set (by its id, derived from the
// instruction's key) in the history and does not post it again. The test
// posts that stock_set with an old at, so that the fold keeps the target
// as it stands until the projector has folded a real one.
func TestSyncPostedBefore(t *testing.T) {
	base, natsURL := startLedgerd(t)
	const shop, sku = "shop-posted", "mat"
	phantomSale(t, base, shop, sku)
	in := waitTarget(t, targetsBucket(t, natsURL), shop, sku, 8, 3)
	id := projections.SyncEventID(in.Key)
	at := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	mustCtl(t, base, "", "send", "-type", "stock_set", "-shop", shop, "-sku", sku, "-stock", "3", "-id", id, "-at", at)

	out := mustCtl(t, base, "", "sync", shop, "-once", "-nats-url", natsURL)
	if want := fmt.Sprintf("platform 8 -> 3 posted before (event %s, seq 4), not again", id); !strings.Contains(out, want) {
		t.Errorf("sync -once: want %q in\n%s", want, out)
	}
	if got := stockSets(t, base, shop, sku); len(got) != 1 {
		t.Errorf("stock_sets in the history %v; want the one posted before", got)
	}
}
