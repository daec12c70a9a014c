package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// sseEvent is one server-sent event as a client sees it.
type sseEvent struct {
	ID, Event, Data string
}

// sseClient reads a live feed in a goroutine of its own.
type sseClient struct {
	resp   *http.Response
	events chan sseEvent
	cancel context.CancelFunc
}

// openLive connects to the shop's live feed, resuming after lastEventID when
// it is not empty. It fails the test unless the answer is 200.
func openLive(t *testing.T, base, shop, lastEventID string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/shops/"+shop+"/live", nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("open live feed: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("open live feed: status %d: %s", resp.StatusCode, body)
	}
	c := &sseClient{resp: resp, events: make(chan sseEvent, 4096), cancel: cancel}
	go func() {
		defer close(c.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.Event != "" || ev.Data != "" {
					c.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.ID = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.Event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.Data = line[6:]
			}
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *sseClient) close() {
	c.cancel()
	c.resp.Body.Close()
}

// next returns the next event of the given kind, skipping others, or fails
// the test after a deadline.
func (c *sseClient) next(t *testing.T, kind string) sseEvent {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				t.Fatalf("live feed closed while waiting for a %q event", kind)
			}
			if ev.Event == kind {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %q event within 15s", kind)
		}
	}
}

// alertMsgs returns the alert stream's messages of a shop after sequence
// `after`, waiting until one of them reports updatedSeq (an event sequence)
// or later: the outbox publishes alert changes after the commit.
func alertMsgs(t *testing.T, js jetstream.JetStream, shop string, after, updatedSeq uint64) []sseEvent {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var out []sseEvent
		var reached bool
		cons, err := js.OrderedConsumer(t.Context(), transport.AlertStream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{transport.AlertSubject(shop, ">")},
			DeliverPolicy:  jetstream.DeliverByStartSequencePolicy, OptStartSeq: after + 1})
		if err != nil {
			t.Fatal(err)
		}
		for {
			m, err := cons.Next(jetstream.FetchMaxWait(300 * time.Millisecond))
			if err != nil {
				break
			}
			meta, _ := m.Metadata()
			var a projections.Alert
			if err := json.Unmarshal(m.Data(), &a); err != nil {
				t.Fatal(err)
			}
			reached = reached || a.UpdatedSeq >= updatedSeq
			out = append(out, sseEvent{ID: strconv.FormatUint(meta.Sequence.Stream, 10), Event: "alert", Data: string(m.Data())})
			if meta.NumPending == 0 {
				break
			}
		}
		if reached {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("no alert change of shop %s reached event seq %d within 15s (got %d changes)", shop, updatedSeq, len(out))
		}
		waitFor(50 * time.Millisecond)
	}
}

func sale(shop, sku, order string, qty int64) map[string]any {
	return map[string]any{"type": "sale", "shop": shop, "sku": sku, "order_id": order, "qty": qty, "unit_price_fen": 5000}
}

// TestLiveResume drops the live feed, lets alerts change meanwhile, and
// reconnects with Last-Event-ID: the feed must replay exactly the shop's
// alert changes after that id, none lost, none repeated, no other shop's.
func TestLiveResume(t *testing.T) {
	svc := startTestService(t, "")
	base := "http://" + svc.httpAddr
	js, err := jetstream.New(svc.nc)
	if err != nil {
		t.Fatal(err)
	}
	const shop, other = "shop-live", "shop-other"
	postEvents(t, base, map[string]any{"type": "listing", "shop": shop, "sku": "cap", "title": "Cap", "price_fen": 5000,
		"stock": 2, "sales_form": "spot", "ship_within_hours": 48})
	postEvents(t, base, map[string]any{"type": "listing", "shop": other, "sku": "cap", "title": "Cap", "price_fen": 5000,
		"stock": 1, "sales_form": "spot", "ship_within_hours": 48})
	// Oversold before the client connects: it comes in the snapshot.
	seq := postEvents(t, base, sale(shop, "cap", "o1", 3))
	before := alertMsgs(t, js, shop, 0, seq)

	c := openLive(t, base, shop, "")
	snap := c.next(t, "alerts")
	var open []projections.Alert
	if err := json.Unmarshal([]byte(snap.Data), &open); err != nil {
		t.Fatalf("alerts snapshot %q: %v", snap.Data, err)
	}
	if len(open) == 0 {
		t.Fatalf("alerts snapshot is empty; the oversold alert is open")
	}
	snapID, err := strconv.ParseUint(snap.ID, 10, 64)
	if err != nil || snapID < mustUint(t, before[len(before)-1].ID) {
		t.Fatalf("snapshot id %q: want a sequence at or after the last alert change %s", snap.ID, before[len(before)-1].ID)
	}
	view := c.next(t, "view")
	if !strings.Contains(view.Data, `"sku":"cap"`) {
		t.Errorf("first view event %s is not the SKU's", view.Data)
	}
	c.next(t, "ready")

	// Live: a change arrives with its stream sequence as id.
	// Another shop's alert lies between ours on the stream; the first
	// change while disconnected directly follows the last one seen, so a
	// feed that skipped one sequence on resume would lose it.
	postEvents(t, base, sale(other, "cap", "x1", 5))
	seq = postEvents(t, base, sale(shop, "cap", "o2", 1))
	want := alertMsgs(t, js, shop, snapID, seq)
	var lastID string
	for i, w := range want {
		got := c.next(t, "alert")
		if got != w {
			t.Fatalf("live alert %d = %+v, want %+v", i, got, w)
		}
		lastID = got.ID
	}
	c.close()

	// Meanwhile: more changes, and a resolution.
	postEvents(t, base, sale(shop, "cap", "o3", 2))
	postEvents(t, base, sale(other, "cap", "x2", 1))
	seq = postEvents(t, base, map[string]any{"type": "restock", "shop": shop, "sku": "cap", "qty": 100})
	missed := alertMsgs(t, js, shop, mustUint(t, lastID), seq)
	if len(missed) < 2 {
		t.Fatalf("only %d alert changes while disconnected; the test needs an update and a resolution", len(missed))
	}

	r := openLive(t, base, shop, lastID)
	for i, w := range missed {
		got := r.next(t, "alert")
		if got != w {
			t.Fatalf("replayed alert %d = %+v, want %+v", i, got, w)
		}
	}
	var last projections.Alert
	if err := json.Unmarshal([]byte(missed[len(missed)-1].Data), &last); err != nil {
		t.Fatal(err)
	}
	if last.State != projections.AlertResolved {
		t.Errorf("last replayed change %+v: want the oversold alert resolved by the restock", last)
	}
	// A resumed feed sends no snapshot: the client keeps what it had.
	select {
	case ev := <-r.events:
		if ev.Event == "alerts" {
			t.Errorf("resumed feed sent an alerts snapshot")
		}
	default:
	}
}

func mustUint(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// TestLiveBounds: a bad Last-Event-ID is refused naming it, and past the
// client bound a new client gets 503 with Retry-After.
func TestLiveBounds(t *testing.T) {
	svc := startTestService(t, "")
	base := "http://" + svc.httpAddr
	status, body := doGetHeader(t, base+"/v1/shops/s1/live", "Last-Event-ID", "abc")
	if status != http.StatusBadRequest || !strings.Contains(string(body), `"field":"Last-Event-ID"`) {
		t.Errorf("Last-Event-ID abc: status %d %s; want 400 naming Last-Event-ID", status, body)
	}
	svc.api.live.clientsMax.Store(1)
	c := openLive(t, base, "s1", "")
	c.next(t, "ready")
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/shops/s1/live", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second client past a bound of 1: status %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	c.close()
	// The slot is free again once the first client is gone.
	deadline := time.Now().Add(10 * time.Second)
	for svc.api.live.clients.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the closed client still holds its slot after 10s")
		}
		waitFor(20 * time.Millisecond)
	}
	openLive(t, base, "s1", "").next(t, "ready")
}

// TestLiveManySKUs: a shop with many more SKUs than a client's queue holds
// (the queue made 8 long here) still gets every current view on connect,
// then ready: the snapshot waits for room instead of dropping the client.
func TestLiveManySKUs(t *testing.T) {
	svc := startTestService(t, "")
	svc.api.live.bufferMax.Store(8)
	base := "http://" + svc.httpAddr
	const shop, n = "shop-big", 600
	var events []map[string]any
	for i := range n {
		events = append(events, map[string]any{"type": "listing", "shop": shop, "sku": fmt.Sprintf("sku-%04d", i),
			"title": "T", "price_fen": 100, "stock": 1, "sales_form": "spot", "ship_within_hours": 24})
	}
	var seq uint64
	for start := 0; start < n; start += ledger.MaxBatch {
		seq = postEvents(t, base, events[start:min(start+ledger.MaxBatch, n)]...)
	}
	js, err := jetstream.New(svc.nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), transport.ViewBucket)
	if err != nil {
		t.Fatal(err)
	}
	waitKV(t, kv, transport.ViewKey(shop, fmt.Sprintf("sku-%04d", n-1)), seq)
	c := openLive(t, base, shop, "")
	views := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				t.Fatalf("feed closed after %d of %d views", len(views), n)
			}
			switch ev.Event {
			case "view":
				var v projections.View
				if err := json.Unmarshal([]byte(ev.Data), &v); err != nil {
					t.Fatal(err)
				}
				views[v.SKU] = true
			case "ready":
				if len(views) != n {
					t.Fatalf("ready after %d views, want %d", len(views), n)
				}
				return
			}
		case <-deadline:
			t.Fatalf("%d of %d views and no ready within 30s", len(views), n)
		}
	}
}

func doGetHeader(t *testing.T, url, key, value string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(key, value)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// TestViewBucket: every SKU's current view is in the STOCK_VIEWS bucket
// under <shop>.<sku>, equal to the HTTP view, and a watcher gets the current
// values first, then changes.
func TestViewBucket(t *testing.T) {
	for _, store := range []string{"memory", "postgres"} {
		t.Run(store, func(t *testing.T) {
			dbURL := ""
			if store == "postgres" {
				dbURL = testDatabaseURL(t)
			}
			svc := startTestService(t, dbURL)
			base := "http://" + svc.httpAddr
			js, err := jetstream.New(svc.nc)
			if err != nil {
				t.Fatal(err)
			}
			const shop = "shop-kv"
			postEvents(t, base, map[string]any{"type": "listing", "shop": shop, "sku": "a", "title": "A", "price_fen": 100,
				"stock": 5, "sales_form": "spot", "ship_within_hours": 24},
				map[string]any{"type": "listing", "shop": shop, "sku": "b", "title": "B", "price_fen": 100,
					"stock": 5, "sales_form": "spot", "ship_within_hours": 24})
			seq := postEvents(t, base, sale(shop, "a", "o1", 2))
			kv, err := js.KeyValue(t.Context(), transport.ViewBucket)
			if err != nil {
				t.Fatalf("open bucket %s: %v", transport.ViewBucket, err)
			}
			for _, sku := range []string{"a", "b"} {
				_, httpView := doGet(t, fmt.Sprintf("%s/v1/shops/%s/skus/%s?min_seq=%d", base, shop, sku, seq))
				var want projections.View
				if err := json.Unmarshal(httpView, &want); err != nil {
					t.Fatal(err)
				}
				got := waitKV(t, kv, transport.ViewKey(shop, sku), want.LastSeq)
				if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
					t.Errorf("bucket %s:\n got %s\nwant %s", transport.ViewKey(shop, sku), g, w)
				}
			}
			w, err := kv.Watch(t.Context(), shop+".*")
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = w.Stop() }()
			initial := map[string]bool{}
			for e := range w.Updates() {
				if e == nil {
					break
				}
				initial[e.Key()] = true
			}
			if !initial[shop+".a"] || !initial[shop+".b"] || len(initial) != 2 {
				t.Errorf("watch initial values: keys %v, want %s.a and %s.b", initial, shop, shop)
			}
			seq = postEvents(t, base, sale(shop, "b", "o2", 1))
			select {
			case e := <-w.Updates():
				var v projections.View
				if err := json.Unmarshal(e.Value(), &v); err != nil {
					t.Fatal(err)
				}
				if e.Key() != shop+".b" || v.LastSeq != seq || v.Committed != 1 {
					t.Errorf("watched change: key %s view %+v; want %s.b at seq %d with committed 1", e.Key(), v, shop, seq)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("no change on the watcher within 15s")
			}
		})
	}
}

// waitKV polls key until its view reaches lastSeq.
func waitKV(t *testing.T, kv jetstream.KeyValue, key string, lastSeq uint64) projections.View {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		e, err := kv.Get(t.Context(), key)
		if err == nil {
			var v projections.View
			if err := json.Unmarshal(e.Value(), &v); err != nil {
				t.Fatal(err)
			}
			if v.LastSeq >= lastSeq {
				return v
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("key %s did not reach seq %d within 15s (last err %v)", key, lastSeq, err)
		}
		waitFor(20 * time.Millisecond)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
