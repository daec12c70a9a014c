package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSKUAsOf reads a SKU's state at past moments, folded from its history.
func TestSKUAsOf(t *testing.T) {
	svc := startTestService(t, "")
	base := "http://" + svc.httpAddr
	now := time.Now().UTC().Truncate(time.Second)
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	const shop, sku = "shop-asof", "mug"
	ev := func(typ string, kv ...any) map[string]any {
		m := map[string]any{"type": typ, "shop": shop, "sku": sku}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	seq := postEvents(t, base,
		ev("listing", "title", "Mug", "price_fen", 2000, "stock", 10, "sales_form", "spot", "ship_within_hours", 24, "at", at(-72*time.Hour)),
		ev("sale", "order_id", "m1", "qty", 4, "unit_price_fen", 2000, "at", at(-60*time.Hour)),
		ev("recount", "counted", 3, "at", at(-time.Hour)),
	)
	get := func(asOf string) (int, map[string]any) {
		t.Helper()
		status, body := doGet(t, fmt.Sprintf("%s/v1/shops/%s/skus/%s?min_seq=%d&as_of=%s", base, shop, sku, seq, url.QueryEscape(asOf)))
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		return status, m
	}
	cases := []struct {
		asOf                                  string
		listed, onHand, committed, lateOrders float64
	}{
		{at(-70 * time.Hour), 10, 10, 0, 0},
		{at(-59 * time.Hour), 6, 10, 4, 0},
		{at(-30 * time.Hour), 6, 10, 4, 1}, // the 24 h promise passed 6 hours before
		{at(0), 6, 3, 4, 1},
	}
	for _, c := range cases {
		status, v := get(c.asOf)
		if status != http.StatusOK {
			t.Fatalf("as_of %s: status %d %v", c.asOf, status, v)
		}
		got := []float64{v["listed"].(float64), v["on_hand"].(float64), v["committed"].(float64), v["late_orders"].(float64)}
		want := []float64{c.listed, c.onHand, c.committed, c.lateOrders}
		if fmt.Sprint(got) != fmt.Sprint(want) || v["as_of"] != c.asOf {
			t.Errorf("as_of %s: listed, on_hand, committed, late_orders = %v (as_of %v), want %v", c.asOf, got, v["as_of"], want)
		}
	}
	// The present agrees with the read model.
	_, now0 := get(at(time.Minute))
	_, body := doGet(t, fmt.Sprintf("%s/v1/shops/%s/skus/%s", base, shop, sku))
	var live map[string]any
	_ = json.Unmarshal(body, &live)
	for _, f := range []string{"listed", "on_hand", "committed", "available", "exposure_fen", "open_orders"} {
		if now0[f] != live[f] {
			t.Errorf("as_of now: %s = %v, read model %v", f, now0[f], live[f])
		}
	}
	if status, _ := get(at(-100 * time.Hour)); status != http.StatusNotFound {
		t.Errorf("as_of before the first event: status %d, want 404", status)
	}
	status, body := doGet(t, fmt.Sprintf("%s/v1/shops/%s/skus/%s?as_of=yesterday", base, shop, sku))
	if status != http.StatusBadRequest || !strings.Contains(string(body), `"field":"as_of"`) {
		t.Errorf("as_of=yesterday: status %d %s, want 400 naming as_of", status, body)
	}
}

// TestMetrics checks the Prometheus figures after a few events.
func TestMetrics(t *testing.T) {
	svc := startTestService(t, "")
	base := "http://" + svc.httpAddr
	seq := postEvents(t, base,
		map[string]any{"type": "listing", "shop": "shop-m", "sku": "a", "title": "A", "price_fen": 1000, "stock": 1, "sales_form": "spot", "ship_within_hours": 24},
		sale("shop-m", "a", "o1", 1), sale("shop-m", "a", "o2", 1), sale("shop-m", "a", "o2", 1))
	doGet(t, fmt.Sprintf("%s/v1/shops/shop-m/alerts?min_seq=%d", base, seq))
	status, body := doGet(t, base+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("/metrics: status %d", status)
	}
	text := string(body)
	for metric, want := range map[string]float64{
		`ledger_events_appended_total{type="sale"}`:                             2, // the re-sent order is a duplicate
		`ledger_events_applied_total{type="sale"}`:                              2,
		`ledger_events_applied_total{type="listing"}`:                           1,
		`ledger_alerts_open{kind="oversold"}`:                                   1,
		`ledger_alerts_open_exposure_fen{kind="oversold"}`:                      1500, // 30% of ¥50, unshipped
		`ledger_projector_lag_events`:                                           0,
		`ledger_dead_lettered_total`:                                            0,
		`ledger_projector_applied_seq`:                                          float64(seq),
		`ledger_http_request_seconds_count{code="202",route="POST /v1/events"}`: 1,
	} {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(metric) + ` (\S+)$`).FindStringSubmatch(text)
		if m == nil {
			t.Errorf("metric %s missing", metric)
			continue
		}
		if got, _ := strconv.ParseFloat(m[1], 64); got != want {
			t.Errorf("%s = %v, want %v", metric, got, want)
		}
	}
	for _, name := range []string{"ledger_projector_batch_messages_count", "ledger_projector_commit_seconds_count", "ledger_projector_skus_held", "ledger_projector_orders_held"} {
		if !strings.Contains(text, name) {
			t.Errorf("metric %s missing", name)
		}
	}
}
