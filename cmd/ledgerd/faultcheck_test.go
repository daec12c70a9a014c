package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/consumers/consumertest"
	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// faultEnv reads a whole number of a fault run from the environment: the
// short version runs in the README's test command, the long one with
// LEDGER_FAULT_FULL=1 (see RELIABILITY.md).
func faultEnv(short, full int) int {
	if os.Getenv("LEDGER_FAULT_FULL") != "" {
		return full
	}
	return short
}

// feed is the order-feed load: listings, then sales across a few SKUs of
// one shop with the rest of contract v2 among them (see batch), each batch
// published with the idempotent publisher and retried (same events, same
// ids) until acknowledged.
type feed struct {
	shop string
	skus int
	pub  *transport.Publisher

	mu    sync.Mutex
	acked map[string]bool // event ids acknowledged
	sent  int             // sales acknowledged (the feed's step count)
	lines int             // order lines sold: sales plus second lines
	retry int             // failed publish attempts, retried
}

// feedBatchMax bounds one published batch of the feed.
const feedBatchMax = 50

// feedPace is the pause between two batches of the feed: at most
// feedBatchMax sales per pause, so that a fault run loads the service
// without starving the rest of a shared 2-core machine.
const feedPace = 10 * time.Millisecond

// feedAttemptsMax bounds the attempts of one batch across faults.
const feedAttemptsMax = 600

func newFeed(pub *transport.Publisher, shop string, skus int) *feed {
	return &feed{shop: shop, skus: skus, pub: pub, acked: map[string]bool{}}
}

// publish sends events until acknowledged; it fails the test after
// feedAttemptsMax attempts.
func (f *feed) publish(t testing.TB, events []ledger.Event) {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		acks, err := f.pub.Publish(ctx, events)
		cancel()
		if err == nil {
			f.mu.Lock()
			for _, a := range acks {
				f.acked[a.ID] = true
			}
			f.mu.Unlock()
			return
		}
		f.mu.Lock()
		f.retry++
		f.mu.Unlock()
		if attempt == feedAttemptsMax {
			t.Errorf("publish never acknowledged after %d attempts: %v", attempt, err)
			return
		}
		waitFor(50 * time.Millisecond)
	}
}

func (f *feed) sku(i int) string { return fmt.Sprintf("sku-%d", i%f.skus) }

// listAll lists every SKU with 100 units, so that the sales that follow
// oversell and raise alerts.
func (f *feed) listAll(t testing.TB) {
	var events []ledger.Event
	for i := range f.skus {
		events = append(events, ledger.Event{Type: ledger.Listing, Shop: f.shop, SKU: f.sku(i), Title: "Fault test",
			PriceFen: 1990, Stock: ledger.Int64(100), SalesForm: ledger.Spot, ShipWithinHours: 72})
	}
	f.publish(t, events)
}

// batch publishes sales from..from+n-1 with, among them: a cancel every
// tenth (of sale j−5), a second line of the order on another SKU every
// seventh, a whole-line shipment every thirteenth (of sale j−7) and a
// partial one by waybill (of sale j−8), a return of part of a shipped line
// (with some units restocked), a promise change, a safety stock, a restock
// by receipt, a stock_set and a recount. Cancels only ever touch sales
// ≡ 4 (mod 10) and shipments never do, so no event asks for units its
// line does not have: the fold refuses none.
func (f *feed) batch(t testing.TB, from, n int) {
	events := make([]ledger.Event, 0, 2*n)
	lines := 0
	order := func(j int) string { return fmt.Sprintf("%s-%06d", f.shop, j) }
	for j := from; j < from+n; j++ {
		ev := func(typ ledger.Type, sku int) ledger.Event {
			return ledger.Event{Type: typ, Shop: f.shop, SKU: f.sku(sku)}
		}
		sale := ev(ledger.Sale, j)
		sale.OrderID, sale.Qty, sale.UnitPriceFen = order(j), ledger.Int64(1+int64(j%3)), 1990
		events, lines = append(events, sale), lines+1
		if j%7 == 0 {
			second := ev(ledger.Sale, j+1)
			second.OrderID, second.Qty, second.UnitPriceFen, second.ParentOrderID = order(j), ledger.Int64(1), 990, "p-"+order(j)
			events, lines = append(events, second), lines+1
		}
		if j%10 == 9 {
			e := ev(ledger.Cancel, j-5)
			e.OrderID = order(j - 5)
			events = append(events, e)
		}
		if k := j - 7; j%13 == 0 && k >= 0 && k%10 != 4 {
			e := ev(ledger.Shipment, k)
			e.OrderID = order(k)
			events = append(events, e)
		}
		if k := j - 13; j%13 == 6 && k >= 0 && k%10 != 4 { // shipped whole at step j−6
			e := ev(ledger.Return, k)
			e.OrderID, e.Qty, e.ReturnID, e.Restocked = order(k), ledger.Int64(1), "rt-"+order(k), ledger.Int64(int64(j%2))
			events = append(events, e)
		}
		if k := j - 8; j%13 == 3 && k >= 0 && k%10 != 4 && k%3 != 0 { // a line of 2 or 3 units
			e := ev(ledger.Shipment, k)
			e.OrderID, e.Qty, e.Waybill = order(k), ledger.Int64(1), "wb-"+order(k)
			events = append(events, e)
		}
		events = append(events, f.settings(j)...)
	}
	f.publish(t, events)
	f.mu.Lock()
	f.sent += n
	f.lines += lines
	f.mu.Unlock()
}

// settings are the feed's settings and receipts at step j.
func (f *feed) settings(j int) []ledger.Event {
	var events []ledger.Event
	if j%19 == 0 && j >= 2 {
		events = append(events, ledger.Event{Type: ledger.PromiseChanged, Shop: f.shop, SKU: f.sku(j - 2),
			OrderID: fmt.Sprintf("%s-%06d", f.shop, j-2), ShipBy: ledger.Time(time.Now().Add(100 * time.Hour).UTC().Truncate(time.Second))})
	}
	if j%23 == 0 {
		events = append(events, ledger.Event{Type: ledger.SafetyStockSet, Shop: f.shop, SKU: f.sku(j), Qty: ledger.Int64(int64(j % 4))})
	}
	if j%29 == 0 {
		events = append(events, ledger.Event{Type: ledger.Restock, Shop: f.shop, SKU: f.sku(j), Qty: ledger.Int64(5), ReceiptID: fmt.Sprintf("gr-%06d", j)})
	}
	if j%31 == 0 {
		events = append(events, ledger.Event{Type: ledger.StockSet, Shop: f.shop, SKU: f.sku(j), Stock: ledger.Int64(50)})
	}
	if j%50 == 49 {
		events = append(events, ledger.Event{Type: ledger.Recount, Shop: f.shop, SKU: f.sku(j), Counted: ledger.Int64(int64(j % 97))})
	}
	return events
}

// run publishes batches until stop is closed (after at least one), then
// returns the number of order lines sold.
func (f *feed) run(t testing.TB, stop <-chan struct{}) int {
	f.listAll(t)
	for i := 0; ; i += feedBatchMax {
		f.batch(t, i, feedBatchMax)
		select {
		case <-stop:
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.lines
		case <-time.After(feedPace):
		}
	}
}

func (f *feed) ackedIDs() map[string]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]bool, len(f.acked))
	for id := range f.acked {
		out[id] = true
	}
	return out
}

// connectJS connects to the NATS at url for one test, closed when the test
// ends, with a JetStream context.
func connectJS(t *testing.T, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// restartingFeed is an order feed of shop over a connection that rides out
// server restarts and kills: it reconnects at once and keeps retrying.
func restartingFeed(t *testing.T, url, shop string) (*nats.Conn, jetstream.JetStream, *feed) {
	t.Helper()
	nc, js := connectJS(t, url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.RetryOnFailedConnect(true))
	pub, err := transport.NewPublisher(nc, transport.PublisherOptions{AckTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, newFeed(pub, shop, 4)
}

// checkService is the end of every fault run: the read model the service at
// base shows equals a fresh fold of the whole stream, every acknowledged
// event is in the stream once, every sale is stored and counted once, and
// every alert change is on the alert stream. header carries a token when
// the service wants one.
func checkService(t *testing.T, base string, js jetstream.JetStream, acked map[string]bool, shops ...string) consumertest.Figures {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Every service of the fault runs keeps ledgerd's default fold settings.
	l, err := consumertest.Read(ctx, js, projections.DefaultFoldConfig())
	if err != nil {
		t.Fatalf("fold the stream: %v", err)
	}
	figs, problems := l.CheckAcked(acked)
	for _, shop := range shops {
		var views struct {
			SKUs []projections.View `json:"skus"`
		}
		getJSON(t, fmt.Sprintf("%s/v1/shops/%s/skus?min_seq=%d", base, shop, l.LastSeq), &views)
		got := map[string]projections.View{}
		for _, v := range views.SKUs {
			got[v.SKU] = v
		}
		for k, s := range l.SKUs {
			if k.Shop != shop {
				continue
			}
			v, ok := got[k.SKU]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s/%s: folded but not in the read model", k.Shop, k.SKU))
				continue
			}
			if d := consumertest.CompareView(s.View(), v); d != "" {
				problems = append(problems, d)
			}
			// Every sale counted once: committed is the open spot lines' units.
			var units int64
			spot, _ := s.OpenLines()
			for _, l := range spot {
				units += l.Open()
			}
			if v.Committed != units {
				problems = append(problems, fmt.Sprintf("%s/%s: committed %d, open lines hold %d units", k.Shop, k.SKU, v.Committed, units))
			}
			delete(got, k.SKU)
		}
		for sku := range got {
			problems = append(problems, fmt.Sprintf("%s/%s: in the read model but not in the stream", shop, sku))
		}
		var alerts struct {
			Alerts []projections.Alert `json:"alerts"`
		}
		getJSON(t, fmt.Sprintf("%s/v1/shops/%s/alerts?state=all&min_seq=%d", base, shop, l.LastSeq), &alerts)
		problems = append(problems, l.CompareAlerts(shop, alerts.Alerts)...)
	}
	missing, err := l.WaitAlertsPublished(ctx, js)
	if err != nil {
		t.Fatalf("read the alert stream: %v", err)
	}
	for _, m := range missing {
		problems = append(problems, "alert change not on the alert stream: "+m)
	}
	problems = append(problems, l.CheckSync(ctx, js)...)
	if len(problems) > 0 {
		t.Errorf("%d problems after the fault run:\n%s", len(problems), consumertest.Join(problems, 30))
	}
	if len(l.Alerts) == 0 {
		t.Error("the run raised no alert: the load must oversell to check that no alert is lost")
	}
	t.Logf("check: stream last seq %d, %d SKUs, %d alerts, %d refused; %s", l.LastSeq, len(l.SKUs), len(l.Alerts), len(l.Refused), figs)
	return figs
}

// getJSON GETs url (with the test's admin token when tokens are on) and
// decodes a 200 answer, retrying while the service answers 503 or 504.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, body := doGet(t, url)
		if status == http.StatusOK {
			if err := json.Unmarshal(body, v); err != nil {
				t.Fatalf("GET %s: %v", url, err)
			}
			return
		}
		if (status != http.StatusServiceUnavailable && status != http.StatusGatewayTimeout) || time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %s", url, status, body)
		}
		waitFor(100 * time.Millisecond)
	}
}

// report logs one fault's figures in the form RELIABILITY.md quotes.
func report(t *testing.T, fault string, runs, faults int, figs consumertest.Figures, retries int) {
	t.Helper()
	t.Logf("RELIABILITY %s: runs %d, faults %d, %s, publish retries %d", fault, runs, faults, figs, retries)
}
