package consumers

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
	"stockledger/projections/pgtest"
)

// openPostgres returns a Postgres store in a fresh schema, and a pool on the
// same schema for the test's own SQL.
func openPostgres(t *testing.T) (*projections.PostgresStore, *pgxpool.Pool) {
	t.Helper()
	url, schema := pgtest.Open(t)
	st, err := projections.OpenPostgres(context.Background(), url, projections.PostgresOptions{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return st, pool
}

// runUntil runs p until it has applied seq, then stops it.
func runUntil(t *testing.T, p *Projector, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	err := p.WaitApplied(wctx, seq)
	wcancel()
	cancel()
	if rerr := <-done; rerr != nil {
		t.Fatalf("projector: %v", rerr)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// resend publishes events straight onto their subjects with message ids of
// their own: what a feed re-sending orders after the stream's duplicate
// window looks like to the projector.
func resend(t *testing.T, js jetstream.JetStream, tag string, events ...ledger.Event) uint64 {
	t.Helper()
	var last uint64
	for i, e := range events {
		e.At = time.Now().UTC()
		data, err := ledger.EncodeEvent(&e)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: transport.EventSubject(e.Shop, e.SKU), Data: data},
			jetstream.WithMsgID(fmt.Sprintf("resend-%s-%d", tag, i)))
		if err != nil {
			t.Fatal(err)
		}
		last = ack.Sequence
	}
	return last
}

func orderEvent(typ ledger.Type, order string) ledger.Event {
	e := ledger.Event{Type: typ, Shop: "s1", SKU: "a", OrderID: order}
	if typ == ledger.Sale {
		e.Qty, e.UnitPriceFen = ledger.Int64(1), 1000
	}
	return e
}

// TestClosedOrdersLeaveMemory: once committed, shipped and cancelled orders
// leave the projector's memory, and a re-sent order is still counted once:
// recalled from the store, whether the SKU stayed cached or was loaded again
// by a new projector.
func TestClosedOrdersLeaveMemory(t *testing.T) {
	for _, name := range []string{"memory", "postgres"} {
		t.Run(name, func(t *testing.T) {
			nc, js := faultNATS(t)
			var store projections.Store = projections.NewMemoryStore()
			var asked *askedLines
			if name == "postgres" {
				pg, _ := openPostgres(t)
				asked = &askedLines{PostgresStore: pg}
				store = asked
			}
			pub, err := transport.NewPublisher(nc, transport.PublisherOptions{})
			if err != nil {
				t.Fatal(err)
			}
			events := []ledger.Event{{Type: ledger.Listing, Shop: "s1", SKU: "a", Title: "t", PriceFen: 1000,
				Stock: ledger.Int64(100), SalesForm: ledger.Spot, ShipWithinHours: 24}}
			for i := range 30 {
				events = append(events, orderEvent(ledger.Sale, fmt.Sprintf("o-%d", i)))
			}
			for i := range 20 {
				events = append(events, orderEvent(ledger.Shipment, fmt.Sprintf("o-%d", i)))
			}
			for i := 20; i < 25; i++ {
				events = append(events, orderEvent(ledger.Cancel, fmt.Sprintf("o-%d", i)))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			acks, err := pub.Publish(ctx, events)
			if err != nil {
				t.Fatal(err)
			}
			last := acks[len(acks)-1].Seq
			p1 := NewProjector(nc, js, store, Options{Log: quietLog(), BatchMax: 7})
			ctx1, stop1 := context.WithCancel(context.Background())
			done1 := make(chan error, 1)
			go func() { done1 <- p1.Run(ctx1) }()
			wait := func(seq uint64) {
				t.Helper()
				wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer wcancel()
				if err := p1.WaitApplied(wctx, seq); err != nil {
					t.Fatal(err)
				}
			}
			wait(last)
			// Once the closed orders left memory, the SKU still cached:
			// re-sent sales of a shipped and a cancelled order, a second
			// shipment, a new sale.
			wait(resend(t, js, "a", orderEvent(ledger.Sale, "o-3"), orderEvent(ledger.Sale, "o-21"),
				orderEvent(ledger.Shipment, "o-0"), orderEvent(ledger.Sale, "o-30")))
			stop1()
			if err := <-done1; err != nil {
				t.Fatalf("projector: %v", err)
			}
			key := projections.SKUKey{Shop: "s1", SKU: "a"}
			if got := len(p1.folder.cache[key].Lines); got != 6 {
				t.Errorf("orders held in memory after the commits: %d, want the 6 open ones", got)
			}
			// The line filter: the store is asked about the re-sent lines
			// (closed, out of memory), not about the 31 new ones.
			asked.check(t, "first projector", []string{"o-0", "o-3", "o-21"}, 31)

			// A new projector loads the SKU from the store: closed orders are
			// not among what it loads, and are recalled when named.
			last = resend(t, js, "b", orderEvent(ledger.Sale, "o-4"), orderEvent(ledger.Cancel, "o-1"),
				orderEvent(ledger.Sale, "o-22"), orderEvent(ledger.Sale, "o-31"))
			p2 := NewProjector(nc, js, store, Options{Log: quietLog(), BatchMax: 3})
			runUntil(t, p2, last)
			if got := len(p2.folder.cache[key].Lines); got != 7 {
				t.Errorf("orders held in memory by the second projector: %d, want the 7 open ones", got)
			}
			// Its filter was loaded from the store's 31 lines.
			asked.check(t, "second projector", []string{"o-1", "o-4", "o-22"}, 1)
			if name == "postgres" && (p2.folder.lines == nil || p2.folder.lines.Keys() != 31+1) {
				t.Errorf("second projector's line filter: %+v, want the store's 31 lines and the new one asked about", p2.folder.lines)
			}
			v, err := store.SKU(context.Background(), "s1", "a")
			if err != nil {
				t.Fatal(err)
			}
			// 32 orders sold once each: 20 shipped, 5 cancelled, 7 open.
			if v.Committed != 7 || v.OpenOrders != 7 || v.OnHand != 80 || v.Listed != 100-32+5 {
				t.Errorf("committed %d open %d on_hand %d listed %d; want 7, 7, 80, %d", v.Committed, v.OpenOrders, v.OnHand, v.Listed, 100-32+5)
			}
			checkStore(t, js, p2, store, nil)
		})
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// askedLines is a Postgres store that records the lines the projector asks
// it about (KnownLines).
type askedLines struct {
	*projections.PostgresStore
	mu  sync.Mutex
	ids []string
}

func (a *askedLines) KnownLines(ctx context.Context, keys []projections.LineKey) (map[projections.LineKey]projections.Line, error) {
	a.mu.Lock()
	for _, k := range keys {
		a.ids = append(a.ids, k.OrderID)
	}
	a.mu.Unlock()
	return a.PostgresStore.KnownLines(ctx, keys)
}

// check fails t unless the lines asked about since the last check are
// want, give or take a few of the fresh new ones (a Bloom filter's false
// positives, up to one in fifty), and forgets them. A nil a checks nothing.
func (a *askedLines) check(t *testing.T, who string, want []string, fresh int) {
	t.Helper()
	if a == nil {
		return
	}
	a.mu.Lock()
	got := a.ids
	a.ids = nil
	a.mu.Unlock()
	for _, id := range want {
		if !slices.Contains(got, id) {
			t.Errorf("%s: the store was not asked about line %s; asked %v", who, id, got)
		}
	}
	if extra := len(got) - len(want); extra < 0 || extra > 1+fresh/10 {
		t.Errorf("%s: asked the store about %d lines %v, want %v and at most %d of the %d new ones", who, len(got), got, want, 1+fresh/10, fresh)
	}
}

// TestStoreRewound: the Postgres read model goes back to an earlier state (a
// restore, or commits lost with the server) while the projector runs. Its
// next commit finds the checkpoint moved; it drops what it holds and folds
// again from the store's checkpoint, and ends equal to a fresh fold.
func TestStoreRewound(t *testing.T) {
	nc, js := faultNATS(t)
	store, pool := openPostgres(t)
	pub, err := transport.NewPublisher(nc, transport.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	p := NewProjector(nc, js, store, Options{Log: slog.New(slog.NewTextHandler(&logs, nil)), BatchMax: 10})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("projector: %v", err)
		}
	}()
	part := func(from, to int, ship bool) uint64 {
		t.Helper()
		var events []ledger.Event
		if from == 0 {
			events = append(events, ledger.Event{Type: ledger.Listing, Shop: "s1", SKU: "a", Title: "t", PriceFen: 1000,
				Stock: ledger.Int64(60), SalesForm: ledger.Spot, ShipWithinHours: 24})
		}
		for i := from; i < to; i++ {
			events = append(events, orderEvent(ledger.Sale, fmt.Sprintf("o-%d", i)))
			if ship && i%2 == 0 {
				events = append(events, orderEvent(ledger.Shipment, fmt.Sprintf("o-%d", i)))
			}
		}
		pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer pcancel()
		acks, err := pub.Publish(pctx, events)
		if err != nil {
			t.Fatal(err)
		}
		last := acks[len(acks)-1].Seq
		wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer wcancel()
		if err := p.WaitApplied(wctx, last); err != nil {
			t.Fatal(err)
		}
		return last
	}
	tables := []string{"checkpoints", "skus", "lines", "applied_keys", "alerts", "alert_outbox"}
	part(0, 40, true)
	for _, tb := range tables {
		if _, err := pool.Exec(context.Background(), "CREATE TABLE snap_"+tb+" AS SELECT * FROM "+tb); err != nil {
			t.Fatal(err)
		}
	}
	part(40, 70, true) // oversold past 60: alerts too
	err = pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		for _, tb := range tables {
			if _, err := tx.Exec(context.Background(), "DELETE FROM "+tb); err != nil {
				return err
			}
			if _, err := tx.Exec(context.Background(), "INSERT INTO "+tb+" SELECT * FROM snap_"+tb); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("rewind the read model: %v", err)
	}
	part(70, 90, false)
	checkStore(t, js, p, store, nil)
	v, err := store.SKU(context.Background(), "s1", "a")
	if err != nil {
		t.Fatal(err)
	}
	if v.Committed != 55 || v.OnHand != 25 {
		t.Errorf("committed %d on_hand %d, want 55 and 25 (90 sold, 35 shipped)", v.Committed, v.OnHand)
	}
	if !strings.Contains(logs.String(), "folding again from the store's") {
		t.Errorf("the projector did not say it went back to the store's checkpoint; its log:\n%s", logs.String())
	}
}
