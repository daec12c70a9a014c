package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"stockledger/consumers/consumertest"
	"stockledger/projections"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// rawEvent is an event as a feed in another language writes it: bare JSON,
// its natural key worked out by hand as the contract gives it.
type rawEvent struct {
	key  string
	body map[string]any
}

// TestBareJSONFeedOverNATS plays an order feed that is not ours: it
// publishes bare JSON over NATS with Nats-Msg-Id set to each event's natural
// key (DESIGN "Idempotency"), every event type among them, and a two-SKU
// order under one order id. With a duplicate window of one second, it then
// publishes every event again two seconds later, as a platform's retried
// push or a feed's re-poll would: the stream stores the copies (the window
// has passed), and the ledger applies each key once, settings by `at`.
func TestBareJSONFeedOverNATS(t *testing.T) {
	svc := startTestService(t, "", func(c *config) { c.DuplicateWindow = time.Second })
	nc, err := nats.Connect(svc.ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	events := bareFeed(time.Now().UTC().Add(-time.Hour).Truncate(time.Second))
	last := publishRaw(t, js, events, false)
	base := "http://" + svc.httpAddr
	want := map[string]map[string]any{
		// listed 10 − 2 sold, then stock_set 20 (t+8m) and 12 (t+9m);
		// on_hand 10 + 3 restocked − 1 shipped + 1 back on the shelf.
		"mug": {"listed": 12, "on_hand": 13, "committed": 1, "available": 12, "safety_stock": 2, "sellable": 10, "open_orders": 1},
		// the second line of order o-2, then cancelled; recounted; delisted.
		"cup": {"status": "delisted", "listed": 5, "on_hand": 4, "committed": 0, "open_orders": 0},
		"pillow": {"listed": 25, "capacity": 20, "presale_committed": 5, "capacity_left": 15, "sellable": 15,
			"open_orders": 1},
	}
	checkSKUs(t, base, "shop-raw", last, want)

	time.Sleep(2 * time.Second) // past the 1 s duplicate window
	last = publishRaw(t, js, events, true)
	checkSKUs(t, base, "shop-raw", last, want)

	// A stale stock_set (the t+8m one) re-sent once more, later still:
	// the newer one (t+9m) keeps its slot. Then the same one stamped with a
	// later `at` than the newer one, as a feed that dates a retry when it
	// sends it: its id was applied, so it is not applied again.
	time.Sleep(2 * time.Second)
	last = publishRaw(t, js, events[8:9], true)
	checkSKUs(t, base, "shop-raw", last, map[string]map[string]any{"mug": {"listed": 12}})
	restamped := rawEvent{key: events[8].key, body: maps.Clone(events[8].body)}
	restamped.body["at"] = time.Now().UTC().Format(time.RFC3339)
	time.Sleep(2 * time.Second)
	last = publishRaw(t, js, []rawEvent{restamped}, true)
	checkSKUs(t, base, "shop-raw", last, map[string]map[string]any{"mug": {"listed": 12}})
}

// bareFeed is every event type, each with its id and time, as JSON objects.
func bareFeed(t0 time.Time) []rawEvent {
	at := func(m int) string { return t0.Add(time.Duration(m) * time.Minute).Format(time.RFC3339) }
	ev := func(sku, typ string, m int, fields map[string]any) map[string]any {
		fields["id"], fields["type"], fields["shop"], fields["sku"], fields["at"] = uuid.NewString(), typ, "shop-raw", sku, at(m)
		return fields
	}
	byID := func(body map[string]any) rawEvent { return rawEvent{key: body["id"].(string), body: body} }
	return []rawEvent{
		byID(ev("mug", "listing", 0, map[string]any{"title": "Mug", "price_fen": 2900, "stock": 10, "sales_form": "spot", "ship_within_hours": 48})),
		byID(ev("cup", "listing", 0, map[string]any{"title": "Cup", "price_fen": 1900, "stock": 5, "sales_form": "spot", "ship_within_hours": 48})),
		byID(ev("pillow", "listing", 0, map[string]any{"title": "Pillow", "price_fen": 3900, "stock": 30, "sales_form": "presale", "ship_within_days": 7})),
		{"sale:shop-raw:mug:o-2", ev("mug", "sale", 1, map[string]any{"order_id": "o-2", "qty": 2, "unit_price_fen": 2900, "parent_order_id": "p-2"})},
		{"sale:shop-raw:cup:o-2", ev("cup", "sale", 1, map[string]any{"order_id": "o-2", "qty": 1, "unit_price_fen": 1900, "parent_order_id": "p-2"})},
		{"restock:shop-raw:mug:gr-1", ev("mug", "restock", 2, map[string]any{"qty": 3, "receipt_id": "gr-1"})},
		{"shipment:shop-raw:mug:o-2:wb-1", ev("mug", "shipment", 3, map[string]any{"order_id": "o-2", "qty": 1, "waybill": "wb-1"})},
		{"cancel:shop-raw:cup:o-2:all", ev("cup", "cancel", 4, map[string]any{"order_id": "o-2"})},
		byID(ev("mug", "stock_set", 8, map[string]any{"stock": 20})),
		byID(ev("mug", "stock_set", 9, map[string]any{"stock": 12})),
		{"return:shop-raw:mug:o-2:rt-1", ev("mug", "return", 10, map[string]any{"order_id": "o-2", "qty": 1, "return_id": "rt-1", "restocked": 1})},
		byID(ev("mug", "promise_changed", 11, map[string]any{"order_id": "o-2", "ship_by": t0.Add(120 * time.Hour).Format(time.RFC3339)})),
		byID(ev("mug", "safety_stock_set", 12, map[string]any{"qty": 2})),
		byID(ev("cup", "recount", 13, map[string]any{"counted": 4, "counted_by": "wh-1"})),
		byID(ev("cup", "delisting", 14, map[string]any{})),
		byID(ev("pillow", "capacity_confirmed", 15, map[string]any{"supplier": "mill-1", "qty": 20, "deliver_by": t0.Add(72 * time.Hour).Format(time.RFC3339)})),
		{"sale:shop-raw:pillow:o-3", ev("pillow", "sale", 16, map[string]any{"order_id": "o-3", "qty": 5, "unit_price_fen": 3900})},
	}
}

// publishRaw publishes each event's JSON alone on its subject with its key as
// Nats-Msg-Id, and returns the last stream sequence. Every publish must be
// stored, not dropped as a duplicate: a re-send comes after the window.
func publishRaw(t *testing.T, js jetstream.JetStream, events []rawEvent, resend bool) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var last uint64
	for _, e := range events {
		data, err := json.Marshal(e.body)
		if err != nil {
			t.Fatal(err)
		}
		msg := &nats.Msg{Subject: fmt.Sprintf("stock.events.%s.%s", e.body["shop"], e.body["sku"]), Data: data, Header: nats.Header{}}
		msg.Header.Set("Nats-Msg-Id", e.key)
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			t.Fatalf("publish %s: %v", e.key, err)
		}
		if ack.Duplicate {
			t.Fatalf("publish %s (re-send %v): dropped as a duplicate, want it stored", e.key, resend)
		}
		last = ack.Sequence
	}
	return last
}

// checkSKUs reads each SKU once the projection has applied seq and compares
// the fields given.
func checkSKUs(t *testing.T, base, shop string, seq uint64, want map[string]map[string]any) {
	t.Helper()
	for sku, fields := range want {
		status, body := do(t, http.MethodGet, fmt.Sprintf("%s/v1/shops/%s/skus/%s?min_seq=%d", base, shop, sku, seq), nil)
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", sku, status, body)
		}
		var got map[string]any
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		for f, w := range fields {
			if !sameJSON(got[f], w) {
				t.Errorf("%s after seq %d: %s = %v, want %v", sku, seq, f, got[f], w)
			}
		}
	}
}

// TestPostgresV1SchemaRebuilt starts ledgerd on a Postgres read model of
// the first contract's schema (migrations 001–003, a checkpoint at the
// stream's end, a stale SKU row): migration 004 empties it and the projector
// folds the whole stream again, so every figure is contract v2's, and the
// alert changes published before are not published again (the streams'
// duplicate window is 1 s and has passed, so the alert stream would store
// them).
func TestPostgresV1SchemaRebuilt(t *testing.T) {
	dataDir := t.TempDir()
	opts := func(c *config) { c.DataDir, c.Partitions, c.DuplicateWindow = dataDir, 1, time.Second }
	first := startTestService(t, "", opts)
	base := "http://" + first.httpAddr
	status, body := do(t, http.MethodPost, base+"/v1/events", []byte(`[
		{"type":"listing","shop":"shop-v1","sku":"fan","title":"Fan","price_fen":9900,"stock":3,"sales_form":"spot","ship_within_hours":48},
		{"type":"sale","shop":"shop-v1","sku":"fan","order_id":"o-1","qty":2,"unit_price_fen":9900},
		{"type":"sale","shop":"shop-v1","sku":"fan","order_id":"o-2","qty":2,"unit_price_fen":9900},
		{"type":"shipment","shop":"shop-v1","sku":"fan","order_id":"o-1"}]`))
	if status != http.StatusAccepted {
		t.Fatalf("post: %d %s", status, body)
	}
	var posted postEventsResponse
	if err := json.Unmarshal(body, &posted); err != nil {
		t.Fatal(err)
	}
	checkSKUs(t, base, "shop-v1", posted.LastSeq, map[string]map[string]any{"fan": {"on_hand": 1, "committed": 2}})
	alertsBefore := alertStreamMsgs(t, first)
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}

	dbURL := testDatabaseURL(t)
	makeV1Schema(t, dbURL, posted.LastSeq)
	waitFor(2 * time.Second) // past the duplicate window
	second := startTestService(t, dbURL, opts)
	base = "http://" + second.httpAddr
	checkSKUs(t, base, "shop-v1", posted.LastSeq, map[string]map[string]any{
		"fan": {"listed": 0, "on_hand": 1, "committed": 2, "available": -1, "sellable": 0, "open_orders": 1, "last_seq": posted.LastSeq},
	})
	outboxDrained(t, dbURL)
	if n := alertStreamMsgs(t, second); n != alertsBefore {
		t.Errorf("alert stream holds %d messages after the rebuild, %d before: the rebuild published old changes again", n, alertsBefore)
	}
}

// makeV1Schema lays out the read model as the first contract left it, with
// its checkpoint at last and a SKU row no v2 fold would write.
func makeV1Schema(t *testing.T, dbURL string, last uint64) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	root := repoRoot(t)
	if _, err := conn.Exec(ctx, `CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for v, name := range []string{"001_init.sql", "002_pace.sql", "003_state_bytes.sql"} {
		sql, err := os.ReadFile(filepath.Join(root, "projections", "migrations", name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, string(sql)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations VALUES ($1, now())`, v+1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, `INSERT INTO checkpoints VALUES ('ledger-projector', $1)`, int64(last)); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `INSERT INTO skus (shop, sku, state, title, status, sales_form, ship_within_hours, ship_within_days, price_fen,
		listed, on_hand, committed, available, capacity, presale_committed, capacity_left, open_orders, late_orders,
		exposure_fen, open_alerts, last_seq, updated_at)
		VALUES ('shop-v1', 'fan', '\x7b7d', 'v1', 'listed', 'spot', 48, 0, 1, 99, 99, 0, 99, 0, 0, 0, 0, 0, 0, 0, $1, now())`,
		int64(last))
	if err != nil {
		t.Fatal(err)
	}
}

// alertStreamMsgs counts the messages of the alert stream once the last
// change of every alert a fresh fold of the stream raises is there.
func alertStreamMsgs(t *testing.T, svc *service) uint64 {
	t.Helper()
	nc, err := nats.Connect(svc.ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := consumertest.Read(ctx, js, projections.DefaultFoldConfig())
	if err != nil {
		t.Fatal(err)
	}
	if missing, err := l.WaitAlertsPublished(ctx, js); err != nil || len(missing) > 0 {
		t.Fatalf("alert changes not published: %v %v", missing, err)
	}
	st, err := js.Stream(ctx, "STOCK_ALERTS")
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().State.Msgs
}

// outboxDrained waits until the Postgres read model's alert outbox is empty:
// the publisher has published or passed over every change committed.
func outboxDrained(t *testing.T, dbURL string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM alert_outbox`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("alert outbox still holds %d changes", n)
		}
		waitFor(50 * time.Millisecond)
	}
}
