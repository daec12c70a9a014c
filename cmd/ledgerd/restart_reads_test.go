package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"stockledger/ledger"
	"stockledger/ledger/transport"
)

// Bounds of the restart read test.
const (
	// restartSales is how many sales ledgerd holds when it is killed.
	restartSales = 20_000
	// restartReadsMin is how many answered reads of each kind the test
	// checks after the restart.
	restartReadsMin = 200
	// restartReadMax bounds the read loop after the restart; past it the
	// test fails.
	restartReadMax = 2 * time.Minute
)

// restartRead is what one read after the restart got.
type restartRead struct {
	status     int
	retryAfter string
	applied    uint64 // Ledger-Applied-Seq
	seq        uint64 // the view's last_seq, or the list's applied_seq
	health     string // /healthz status
}

// getRestartRead reads path once; a connection refused (not listening
// yet) is an error.
func getRestartRead(base, path string) (restartRead, error) {
	client := http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(base + path)
	if err != nil {
		return restartRead{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return restartRead{}, err
	}
	r := restartRead{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	r.applied, _ = strconv.ParseUint(resp.Header.Get(headerApplied), 10, 64)
	var v struct {
		LastSeq    uint64 `json:"last_seq"`
		AppliedSeq uint64 `json:"applied_seq"`
		Status     string `json:"status"`
	}
	if resp.StatusCode == http.StatusOK || path == "/healthz" {
		if err := json.Unmarshal(body, &v); err != nil {
			return r, fmt.Errorf("GET %s: %d %s: %w", path, resp.StatusCode, body, err)
		}
	}
	r.seq, r.health = max(v.LastSeq, v.AppliedSeq), v.Status
	if path == "/healthz" {
		r.seq = 0
	}
	return r, nil
}

// TestRestartReadsNeverGoBack runs the real ledgerd with the memory read
// model, which is rebuilt from the stream at start, feeds it 20,000 sales,
// reads them, SIGKILLs it and starts it again on the same data directory,
// reading at once and in a loop: no answer (a view's last_seq, a list's
// applied_seq, Ledger-Applied-Seq) may be older than what was served before
// the kill. 503s with Retry-After while the read model is rebuilt are
// allowed and counted.
func TestRestartReadsNeverGoBack(t *testing.T) {
	bin := buildLedgerd(t)
	httpAddr, natsAddr := freePort(t), freePort(t)
	env := []string{"LEDGER_HTTP_ADDR=" + httpAddr, "LEDGER_NATS_LISTEN=" + natsAddr,
		"LEDGER_DATA_DIR=" + t.TempDir(), "DATABASE_URL=", "NATS_URL=", "LEDGER_LOG_LEVEL=warn"}
	base := "http://" + httpAddr
	const shop, skus = "shop-r", 10
	d := startDaemon(t, bin, env)
	defer func() { d.kill() }()
	waitHealthy(t, base, d)
	last := feedSales(t, "nats://"+natsAddr, shop, skus, restartSales)

	view, list := "/v1/shops/"+shop+"/skus/sku-0", "/v1/shops/"+shop+"/skus"
	served := map[string]restartRead{}
	for _, path := range []string{view + "?min_seq=" + strconv.FormatUint(last, 10), view, list} {
		r, err := getRestartRead(base, path)
		if err != nil || r.status != http.StatusOK || r.applied < last {
			t.Fatalf("GET %s before the kill: %+v %v; want 200 with everything applied (seq %d)", path, r, err, last)
		}
		served[path] = r
	}
	servedSeq := max(served[view].seq, served[view+"?min_seq="+strconv.FormatUint(last, 10)].seq)
	servedApplied := max(served[view].applied, served[list].applied, served[list].seq)
	t.Logf("served before the kill: view last_seq %d, list applied_seq %d, %s %d (stream last seq %d)",
		servedSeq, served[list].seq, headerApplied, servedApplied, last)

	d.kill()
	killed := time.Now()
	d = startDaemon(t, bin, env)
	figs := readAfterRestart(t, base, view, list, servedSeq, servedApplied)
	t.Logf("after the restart: %d connections refused (not listening yet, first answer after %s); "+
		"/healthz starting %d times; reads: %d answered 200 (first after %s, %s %d; the longest read took %s), %d answered 503 with Retry-After (the longest wait %s), none older than before the kill",
		figs.refused, figs.listening.Sub(killed).Round(time.Millisecond), figs.starting, figs.ok,
		figs.firstOK.Sub(killed).Round(time.Millisecond), headerApplied, figs.firstApplied, figs.slowestOK.Round(time.Millisecond), figs.unavailable, figs.slowest.Round(time.Millisecond))
}

// feedSales lists skus SKUs of shop and publishes sales of them over NATS
// in batches of ledger.MaxBatch; it returns the last sequence.
func feedSales(t *testing.T, url, shop string, skus, sales int) uint64 {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	pub, err := transport.NewPublisher(nc, transport.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var events []ledger.Event
	for j := range skus {
		events = append(events, ledger.Event{Type: ledger.Listing, Shop: shop, SKU: fmt.Sprintf("sku-%d", j), Title: "Restart",
			PriceFen: 990, Stock: ledger.Int64(1_000_000), SalesForm: ledger.Spot, ShipWithinHours: 72})
	}
	var last uint64
	for i := 0; i < sales; {
		for len(events) < ledger.MaxBatch && i < sales {
			events = append(events, ledger.Event{Type: ledger.Sale, Shop: shop, SKU: fmt.Sprintf("sku-%d", i%skus),
				OrderID: fmt.Sprintf("r-%06d", i), Qty: ledger.Int64(1), UnitPriceFen: 990})
			i++
		}
		acks, err := pub.Publish(ctx, events)
		if err != nil {
			t.Fatalf("publish sales: %v", err)
		}
		last = acks[len(acks)-1].Seq
		events = events[:0]
	}
	return last
}

// restartFigures counts what the reads after a restart got.
type restartFigures struct {
	refused, starting, ok, unavailable int
	listening, firstOK                 time.Time
	firstApplied                       uint64
	slowest, slowestOK                 time.Duration // the longest 503 and 200 reads (a read waits for the rebuild)
}

// readAfterRestart reads the view, the list and /healthz in a loop from
// the moment ledgerd starts until restartReadsMin reads were answered 200;
// every answer must be at least as new as servedSeq (a view's last_seq)
// and servedApplied (the list's applied_seq, the header).
func readAfterRestart(t *testing.T, base, view, list string, servedSeq, servedApplied uint64) restartFigures {
	t.Helper()
	var f restartFigures
	for deadline := time.Now().Add(restartReadMax); f.ok < 2*restartReadsMin; {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %d reads answered, want %d", restartReadMax, f.ok, 2*restartReadsMin)
		}
		for _, path := range []string{"/healthz", view, list} {
			began := time.Now()
			r, err := getRestartRead(base, path)
			if err != nil {
				var op interface{ Timeout() bool }
				if errors.As(err, &op) && op.Timeout() {
					t.Fatalf("GET %s: %v", path, err)
				}
				f.refused++
				waitFor(5 * time.Millisecond)
				break
			}
			if f.listening.IsZero() {
				f.listening = time.Now()
			}
			f.count(t, path, r, time.Since(began), servedSeq, servedApplied)
		}
	}
	return f
}

// count checks and counts one answer.
func (f *restartFigures) count(t *testing.T, path string, r restartRead, took time.Duration, servedSeq, servedApplied uint64) {
	t.Helper()
	switch {
	case path == "/healthz":
		if r.health == "starting" {
			f.starting++
		}
	case r.status == http.StatusServiceUnavailable:
		f.unavailable++
		f.slowest = max(f.slowest, took)
		if r.retryAfter == "" {
			t.Errorf("GET %s while starting: 503 without Retry-After", path)
		}
	case r.status != http.StatusOK:
		t.Errorf("GET %s after the restart: %d, want 200 or 503", path, r.status)
	default:
		if f.ok == 0 {
			f.firstOK, f.firstApplied = time.Now(), r.applied
		}
		f.ok++
		f.slowestOK = max(f.slowestOK, took)
		wantSeq := servedApplied
		if strings.HasPrefix(path, "/v1/shops/") && !strings.HasSuffix(path, "/skus") {
			wantSeq = servedSeq
		}
		if r.seq < wantSeq || r.applied < servedApplied {
			t.Errorf("GET %s after the restart: seq %d, %s %d; served before the kill: %d, %d: a read went back in time",
				path, r.seq, headerApplied, r.applied, wantSeq, servedApplied)
		}
	}
}
