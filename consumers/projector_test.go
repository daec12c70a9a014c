package consumers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/consumers"
	"stockledger/consumers/consumertest"
	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
	"stockledger/projections/pgtest"
)

// startNATS runs an in-process nats-server with the ledger's streams.
func startNATS(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return consumertest.StartNATS(t, 64<<20)
}

// runProjector runs p until the returned stop is called (or the test ends).
func runProjector(t *testing.T, p *consumers.Projector) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("projector: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitApplied(t *testing.T, p *consumers.Projector, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := p.WaitApplied(ctx, seq); err != nil {
		t.Fatal(err)
	}
}

func publish(t *testing.T, pub *transport.Publisher, events ...ledger.Event) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	acks, err := pub.Publish(ctx, events)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for _, a := range acks {
		last = max(last, a.Seq)
	}
	return last
}

func listing(shop, sku string, stock int64) ledger.Event {
	return ledger.Event{Type: ledger.Listing, Shop: shop, SKU: sku, Title: "t", PriceFen: 1000,
		Stock: ledger.Int64(stock), SalesForm: ledger.Spot, ShipWithinHours: 24}
}

func sale(shop, sku, order string, qty int64) ledger.Event {
	return ledger.Event{Type: ledger.Sale, Shop: shop, SKU: sku, OrderID: order, Qty: ledger.Int64(qty), UnitPriceFen: 1000}
}

func stores(t *testing.T) map[string]func(t *testing.T) projections.Store {
	return map[string]func(t *testing.T) projections.Store{
		"memory": func(t *testing.T) projections.Store { return projections.NewMemoryStore() },
		"postgres": func(t *testing.T) projections.Store {
			url, schema := pgtest.Open(t)
			st, err := projections.OpenPostgres(context.Background(), url, projections.PostgresOptions{Schema: schema})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(st.Close)
			return st
		},
	}
}

// TestPoisonMessagesDeadLettered publishes bad messages straight onto the
// stream's subjects: each goes to STOCK_DEAD with its reason, nothing of
// them is applied, and the events after them are.
func TestPoisonMessagesDeadLettered(t *testing.T) {
	nc, js := startNATS(t)
	store := projections.NewMemoryStore()
	p := consumers.NewProjector(nc, js, store, consumers.Options{Log: testLog(t)})
	runProjector(t, p)
	pub, err := transport.NewPublisher(nc, transport.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, pub, listing("s1", "a", 10))

	good, _ := json.Marshal(sale("s1", "a", "o-1", 1))
	poison := []struct {
		subject string
		data    string
		reason  string
	}{
		{"stock.events.s1.a", `{"type":"sale",`, "decode"},
		{"stock.events.s1.a", `{"type":"teleport","shop":"s1","sku":"a"}`, "validate"},
		{"stock.events.s1.a", `{"type":"sale","shop":"s1","sku":"a","order_id":"o-2","qty":-5,"unit_price_fen":1000}`, "validate"},
		{"stock.events.s1.b", string(good), "subject"},
		{"stock.events.s1.a", `{"type":"listing","shop":"s1","sku":"a","title":"t","price_fen":1000,"stock":3,"sales_form":"presale","ship_within_days":10}`, "refused"},
	}
	for _, pm := range poison {
		if _, err := js.Publish(context.Background(), pm.subject, []byte(pm.data)); err != nil {
			t.Fatal(err)
		}
	}
	last := publish(t, pub, sale("s1", "a", "o-3", 2))
	waitApplied(t, p, last)

	v, err := store.SKU(context.Background(), "s1", "a")
	if err != nil {
		t.Fatal(err)
	}
	if v.Committed != 2 || v.Listed != 8 || v.SalesForm != "spot" {
		t.Errorf("view = committed %d listed %d form %s, want 2, 8, spot: poison must change nothing", v.Committed, v.Listed, v.SalesForm)
	}
	if _, err := store.SKU(context.Background(), "s1", "b"); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("sku b: err %v, want not found", err)
	}
	if got := p.DeadLettered(); got != uint64(len(poison)) {
		t.Errorf("dead-lettered %d, want %d", got, len(poison))
	}
	cons, err := js.OrderedConsumer(context.Background(), transport.DeadStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(len(poison), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for m := range batch.Messages() {
		reason := m.Headers().Get(transport.HeaderDeadReason)
		if reason == "" || m.Headers().Get(transport.HeaderDeadSeq) == "" {
			t.Errorf("dead message %d lacks its reason or seq: %v", i, m.Headers())
		}
		if i < len(poison) && m.Headers().Get(transport.HeaderDeadSubject) != poison[i].subject {
			t.Errorf("dead message %d subject header %q, want %q", i, m.Headers().Get(transport.HeaderDeadSubject), poison[i].subject)
		}
		t.Logf("dead %d: %s", i, reason)
		i++
	}
	if i != len(poison) {
		t.Errorf("STOCK_DEAD holds %d messages, want %d", i, len(poison))
	}
}

// TestRestartResumesFromCheckpoint stops the projector, publishes more,
// redelivers what was applied, and starts a new projector on the same store:
// it resumes at the stored sequence and applies nothing twice.
func TestRestartResumesFromCheckpoint(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			nc, js := startNATS(t)
			store := open(t)
			pub, err := transport.NewPublisher(nc, transport.PublisherOptions{})
			if err != nil {
				t.Fatal(err)
			}
			p1 := consumers.NewProjector(nc, js, store, consumers.Options{Log: testLog(t), BatchMax: 7})
			stop := runProjector(t, p1)
			events := []ledger.Event{listing("s1", "a", 100)}
			for i := range 40 {
				events = append(events, sale("s1", "a", fmt.Sprintf("o-%d", i), 1))
			}
			last := publish(t, pub, events...)
			waitApplied(t, p1, last)
			stop()

			// While it is down: more sales, and one re-sent sale.
			more := []ledger.Event{sale("s1", "a", "o-40", 1), sale("s1", "a", "o-41", 1), sale("s1", "a", "o-3", 1)}
			last = publish(t, pub, more...)

			p2 := consumers.NewProjector(nc, js, store, consumers.Options{Log: testLog(t), BatchMax: 7})
			runProjector(t, p2)
			waitApplied(t, p2, last)
			v, err := store.SKU(context.Background(), "s1", "a")
			if err != nil {
				t.Fatal(err)
			}
			if v.Committed != 42 || v.Listed != 58 || v.OpenOrders != 42 {
				t.Errorf("committed %d listed %d open %d, want 42, 58, 42", v.Committed, v.Listed, v.OpenOrders)
			}
			if v.LastSeq != last {
				t.Errorf("last_seq %d, want %d", v.LastSeq, last)
			}
			if got, _ := store.Checkpoint(context.Background(), consumers.DefaultName); got != last {
				t.Errorf("checkpoint %d, want %d", got, last)
			}
		})
	}
}

// TestShipLateSweep uses an injected clock: once it passes an order's
// promise, the sweep raises ship_late without any event, and the alert is
// published on the alert stream.
func TestShipLateSweep(t *testing.T) {
	nc, js := startNATS(t)
	store := projections.NewMemoryStore()
	base := time.Now().UTC().Truncate(time.Second)
	var mu sync.Mutex
	now := base
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	p := consumers.NewProjector(nc, js, store, consumers.Options{Log: testLog(t), Now: clock, SweepEvery: 20 * time.Millisecond})
	runProjector(t, p)
	alerts, err := nc.SubscribeSync("stock.alerts.s1.ship_late")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := transport.NewPublisher(nc, transport.PublisherOptions{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	l := listing("s1", "a", 5)
	l.At = base.Add(-time.Hour)
	s := sale("s1", "a", "o-1", 2)
	s.At = base
	waitApplied(t, p, publish(t, pub, l, s))

	mu.Lock()
	now = base.Add(25 * time.Hour)
	mu.Unlock()
	msg, err := alerts.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no ship_late alert published: %v", err)
	}
	var a projections.Alert
	if err := json.Unmarshal(msg.Data, &a); err != nil {
		t.Fatal(err)
	}
	if a.Kind != projections.ShipLate || a.State != projections.AlertOpen || a.OrderID != "o-1" || a.ExposureFen != 500 {
		t.Errorf("alert = %+v, want open ship_late of o-1 with exposure 500", a)
	}
	if !a.RaisedAt.Equal(base.Add(24 * time.Hour)) {
		t.Errorf("raised_at %s, want the promise %s", a.RaisedAt, base.Add(24*time.Hour))
	}
	v, err := store.SKU(context.Background(), "s1", "a")
	if err != nil {
		t.Fatal(err)
	}
	if v.LateOrders != 1 {
		t.Errorf("late_orders %d, want 1", v.LateOrders)
	}
}

// testLog writes the projector's log into the test's output, shown when it fails.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}
