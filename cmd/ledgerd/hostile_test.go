package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger/transport"
	"stockledger/projections"
)

// hostile is one piece of bad input and the field its refusal must name.
type hostile struct {
	class, name string
	body        string
	field       string
}

// hostileSale is a valid sale of shop-h/sku-h with fields replaced or added.
func hostileSale(extra string) string {
	return `{"type":"sale","shop":"shop-h","sku":"sku-h","order_id":"h-1","qty":1,"unit_price_fen":100` + extra + `}`
}

// hostileInputs is the table of hostile input tried through HTTP and raw NATS.
func hostileInputs() []hostile {
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	return []hostile{
		{"oversized", "event over 8 KiB", hostileSale(`,"live_id":"` + strings.Repeat("x", 9000) + `"`), "body"},
		{"oversized", "text field over 256 bytes", hostileSale(`,"live_id":"` + strings.Repeat("x", 300) + `"`), "live_id"},
		{"deep JSON", "qty nested 3000 arrays deep", `{"type":"sale","shop":"shop-h","sku":"sku-h","order_id":"h-1","unit_price_fen":100,"qty":` + strings.Repeat("[", 3000) + strings.Repeat("]", 3000) + `}`, "qty"},
		{"deep JSON", "title nested objects", `{"type":"listing","shop":"shop-h","sku":"sku-h","price_fen":1,"stock":1,"sales_form":"spot","ship_within_hours":24,"title":` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `}`, "title"},
		{"huge numbers", "qty 1e400", `{"type":"sale","shop":"shop-h","sku":"sku-h","order_id":"h-1","unit_price_fen":100,"qty":1e400}`, "qty"},
		{"huge numbers", "qty past int64", `{"type":"sale","shop":"shop-h","sku":"sku-h","order_id":"h-1","unit_price_fen":100,"qty":99999999999999999999}`, "qty"},
		{"huge numbers", "unit price past the bound", `{"type":"sale","shop":"shop-h","sku":"sku-h","order_id":"h-1","qty":1,"unit_price_fen":2000000000}`, "unit_price_fen"},
		{"huge numbers", "fractional qty", `{"type":"sale","shop":"shop-h","sku":"sku-h","order_id":"h-1","unit_price_fen":100,"qty":1.5}`, "qty"},
		{"negative quantities", "sale qty -1", `{"type":"sale","shop":"shop-h","sku":"sku-h","order_id":"h-1","unit_price_fen":100,"qty":-1}`, "qty"},
		{"negative quantities", "stock_set -5", `{"type":"stock_set","shop":"shop-h","sku":"sku-h","stock":-5}`, "stock"},
		{"negative quantities", "recount -1", `{"type":"recount","shop":"shop-h","sku":"sku-h","counted":-1}`, "counted"},
		{"negative quantities", "restock -1000000", `{"type":"restock","shop":"shop-h","sku":"sku-h","qty":-1000000}`, "qty"},
		{"non-UTF-8", "live_id bytes ff fe", hostileSale(`,"live_id":"l` + "\xff\xfe" + `"`), "live_id"},
		{"non-UTF-8", "shop with a lone continuation byte", `{"type":"restock","shop":"shop` + "\x80" + `","sku":"sku-h","qty":1}`, "shop"},
		{"control characters in ids", "order_id with NUL", `{"type":"sale","shop":"shop-h","sku":"sku-h","order_id":"h\u00001","qty":1,"unit_price_fen":100}`, "order_id"},
		{"control characters in ids", "shop with newline", `{"type":"restock","shop":"shop\nh","sku":"sku-h","qty":1}`, "shop"},
		{"control characters in ids", "sku with BEL", `{"type":"restock","shop":"shop-h","sku":"sku\u0007","qty":1}`, "sku"},
		{"control characters in ids", "counted_by with ESC", `{"type":"recount","shop":"shop-h","sku":"sku-h","counted":1,"counted_by":"a\u001bb"}`, "counted_by"},
		{"subject wildcards in ids", "shop with a dot and star", `{"type":"restock","shop":"shop.*","sku":"sku-h","qty":1}`, "shop"},
		{"subject wildcards in ids", "sku >", `{"type":"restock","shop":"shop-h","sku":">","qty":1}`, "sku"},
		{"subject wildcards in ids", "shop with a space", `{"type":"restock","shop":"shop h","sku":"sku-h","qty":1}`, "shop"},
		{"subject wildcards in ids", "order_id with *", `{"type":"sale","shop":"shop-h","sku":"sku-h","order_id":"h-*","qty":1,"unit_price_fen":100}`, "order_id"},
		{"future and ancient timestamps", "at in 2999", hostileSale(`,"at":"2999-01-01T00:00:00Z"`), "at"},
		{"future and ancient timestamps", "at in 1970", hostileSale(`,"at":"1970-01-01T00:00:00Z"`), "at"},
		{"future and ancient timestamps", "at one hour ahead", hostileSale(`,"at":"` + future + `"`), "at"},
		{"future and ancient timestamps", "at not a time", hostileSale(`,"at":"yesterday"`), "at"},
		{"duplicate fields", "qty twice", hostileSale(`,"qty":-5`), "qty"},
		{"duplicate fields", "QTY beside qty", hostileSale(`,"QTY":1000`), "qty"},
		{"duplicate fields", "shop twice", hostileSale(`,"shop":"shop-x"`), "shop"},
		{"duplicate fields", "escaped key beside plain", hostileSale(`,"order_\u0069d":"h-2"`), "order_id"},
		{"malformed", "bad JSON", `{"type":"sale",`, "body"},
		{"malformed", "unknown type", `{"type":"refund","shop":"shop-h","sku":"sku-h"}`, "type"},
		{"malformed", "unknown field", hostileSale(`,"discount_fen":5`), "discount_fen"},
		{"malformed", "field of another type", hostileSale(`,"counted":3`), "counted"},
	}
}

// TestHostileInputHTTP posts every hostile input: each is refused with an
// error naming the field, and nothing is appended to the stream.
func TestHostileInputHTTP(t *testing.T) {
	svc := startTestService(t, "")
	base := "http://" + svc.httpAddr
	js, _ := jetstream.New(svc.nc)
	before := streamLastSeq(t, js, transport.EventStream)
	tried, refused := map[string]int{}, map[string]int{}
	cases := append(hostileInputs(), hostile{"oversized", "request over 2 MiB", "[" + strings.Repeat(hostileSale("")+",", 3<<20/len(hostileSale(""))) + hostileSale("") + "]", "body"})
	for _, h := range cases {
		tried[h.class]++
		status, body := do(t, http.MethodPost, base+"/v1/events", []byte(h.body))
		var p problem
		_ = json.Unmarshal(body, &p)
		named := false
		for _, fe := range p.Errors {
			named = named || fe.Field == h.field
		}
		if (status != http.StatusBadRequest && status != http.StatusRequestEntityTooLarge) || !named || !strings.Contains(p.Detail, h.field) {
			t.Errorf("%s / %s: %d %s, want 400 or 413 naming field %s", h.class, h.name, status, truncateForLog(body), h.field)
			continue
		}
		refused[h.class]++
	}
	if after := streamLastSeq(t, js, transport.EventStream); after != before {
		t.Errorf("stream last seq %d → %d: hostile input was appended", before, after)
	}
	logClasses(t, "HTTP", tried, refused)
}

// TestHostileInputNATS publishes every hostile input raw onto an event
// subject, as a feed in any language could: the stream refuses what breaks
// its limits, the projector dead-letters the rest with a reason naming the
// field and never stops, and the read model does not change.
func TestHostileInputNATS(t *testing.T) {
	svc := startTestService(t, "")
	nc, err := nats.Connect(svc.ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub := func(subject, body, id string) (*jetstream.PubAck, error) {
		return js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: []byte(body)}, jetstream.WithMsgID(id))
	}
	if _, err := pub(transport.EventSubject("shop-h", "sku-h"), `{"type":"listing","shop":"shop-h","sku":"sku-h","title":"t","price_fen":100,"stock":10,"sales_form":"spot","ship_within_hours":24}`, "listing-h"); err != nil {
		t.Fatal(err)
	}
	// The order feed keeps publishing while the poison arrives.
	fpub, err := transport.NewPublisher(nc, transport.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := newFeed(fpub, "shop-l", 2)
	stop := make(chan struct{})
	fed := make(chan int)
	go func() { fed <- f.run(t, stop) }()
	waitProgress(t, f, 0, time.Minute)
	rounds := faultEnv(1, 20)
	cases := append(hostileInputs(),
		hostile{"wrong subject", "shop-h event on shop-x's subject", hostileSale(""), "subject"},
		hostile{"wrong subject", "event on a subject with a wildcard", hostileSale(""), "subject"},
	)
	tried, refused := map[string]int{}, map[string]int{}
	want := map[uint64]hostile{} // stored poison by sequence
	for r := range rounds {
		for i, h := range cases {
			tried[h.class]++
			subject := transport.EventSubject("shop-h", "sku-h")
			switch h.name {
			case "shop-h event on shop-x's subject":
				subject = transport.EventSubject("shop-x", "sku-x")
			case "event on a subject with a wildcard":
				subject = transport.EventSubjectRoot + ".shop-h.*"
			}
			ack, err := pub(subject, h.body, "hostile-"+strconv.Itoa(r)+"-"+strconv.Itoa(i))
			if err != nil {
				// The stream itself refused it (size): a clear error at the feed.
				if h.field != "body" {
					t.Errorf("%s / %s: publish refused (%v), want it stored and dead-lettered", h.class, h.name, err)
					continue
				}
				refused[h.class]++
				continue
			}
			want[ack.Sequence] = h
		}
	}
	close(stop)
	<-fed
	// A valid sale after the poison: the projector must get past all of it.
	ack, err := pub(transport.EventSubject("shop-h", "sku-h"), `{"type":"sale","shop":"shop-h","sku":"sku-h","order_id":"h-ok","qty":1,"unit_price_fen":100}`, "sentinel")
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := svc.projector.WaitApplied(wctx, ack.Sequence); err != nil {
		t.Fatalf("projector stopped on poison: %v", err)
	}
	reasons := deadReasons(t, js)
	for seq, h := range want {
		r, ok := reasons[seq]
		if !ok {
			t.Errorf("%s / %s (seq %d): not dead-lettered", h.class, h.name, seq)
			continue
		}
		if !strings.Contains(r, h.field) {
			t.Errorf("%s / %s: dead-letter reason %q does not name %s", h.class, h.name, r, h.field)
			continue
		}
		refused[h.class]++
	}
	status, body := do(t, http.MethodGet, "http://"+svc.httpAddr+"/v1/shops/shop-h/skus/sku-h", nil)
	var v projections.View
	_ = json.Unmarshal(body, &v)
	if status != http.StatusOK || v.Committed != 1 || v.Listed != 9 || v.OnHand != 10 {
		t.Errorf("view after poison: %d %s, want committed 1, listed 9, on_hand 10 (only the valid events)", status, body)
	}
	status, body = do(t, http.MethodGet, "http://"+svc.httpAddr+"/v1/shops/shop-x/skus", nil)
	if status != http.StatusOK || strings.Contains(string(body), `"sku"`) {
		t.Errorf("shop-x after an event on its subject that names shop-h: %d %s, want no SKU", status, body)
	}
	logClasses(t, "raw NATS", tried, refused)
	figs := checkService(t, "http://"+svc.httpAddr, js, f.ackedIDs(), f.shop, "shop-h", "shop-x")
	report(t, fmt.Sprintf("poison published raw (%d messages) under load", len(want)), 1, len(want), figs, f.retry)
}

func streamLastSeq(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().State.LastSeq
}

// deadReasons reads STOCK_DEAD: the reason of each dead-lettered event
// sequence.
func deadReasons(t *testing.T, js jetstream.JetStream) map[uint64]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	last := streamLastSeq(t, js, transport.DeadStream)
	out := map[uint64]string{}
	if last == 0 {
		return out
	}
	cons, err := js.OrderedConsumer(ctx, transport.DeadStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for read := uint64(0); read < last; {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, _ := m.Metadata()
			read = meta.Sequence.Stream
			seq, _ := strconv.ParseUint(m.Headers().Get(transport.HeaderDeadSeq), 10, 64)
			out[seq] = m.Headers().Get(transport.HeaderDeadReason)
		}
		if n == 0 {
			t.Fatalf("dead-letter stream read stalled at %d of %d", read, last)
		}
	}
	return out
}

func logClasses(t *testing.T, via string, tried, refused map[string]int) {
	t.Helper()
	for class, n := range tried {
		t.Logf("hostile via %s: class %q tried %d refused-with-field %d", via, class, n, refused[class])
	}
}

func truncateForLog(b []byte) string {
	if len(b) > 300 {
		return fmt.Sprintf("%s… (%d bytes)", b[:300], len(b))
	}
	return string(b)
}

// TestHostileReads sends hostile path tokens and query values to the read
// API: each is refused with 400 naming the parameter, before any store read.
func TestHostileReads(t *testing.T) {
	svc := startTestService(t, "")
	base := "http://" + svc.httpAddr
	cases := []struct{ path, field string }{
		{"/v1/shops/shop';DROP%20TABLE%20skus;--/skus", "shop"},
		{"/v1/shops/shop%00a/skus", "shop"},
		{"/v1/shops/" + strings.Repeat("s", 65) + "/skus", "shop"},
		{"/v1/shops/shop-a/skus/sku.%3E", "sku"},
		{"/v1/shops/shop-a/skus/sku%2A", "sku"},
		{"/v1/shops/shop-a/skus?min_seq=99999999999999999999999", "min_seq"},
		{"/v1/shops/shop-a/skus?min_seq=-1", "min_seq"},
		{"/v1/shops/shop-a/alerts?state=open%27%20OR%201=1", "state"},
		{"/v1/shops/shop-a/skus/sku-1/events?limit=-5", "limit"},
		{"/v1/shops/shop-a/skus/sku-1/events?limit=100000000", "limit"},
		{"/v1/shops/shop-a/skus/sku-1/events?after_seq=1e9", "after_seq"},
	}
	for _, tc := range cases {
		status, body := doGet(t, base+tc.path)
		var p problem
		_ = json.Unmarshal(body, &p)
		if status != http.StatusBadRequest || len(p.Errors) == 0 || p.Errors[0].Field != tc.field {
			t.Errorf("GET %s: %d %s, want 400 naming %s", tc.path, status, truncateForLog(body), tc.field)
		}
	}
}
