package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"stockledger/projections"
	"stockledger/projections/pgtest"
)

// startTestService runs ledgerd in process: embedded NATS on a random port,
// HTTP on a random port, the read model in Postgres at databaseURL or in
// memory when it is empty. It stops when the test ends. Options change the
// configuration before start.
func startTestService(t testing.TB, databaseURL string, opts ...func(*config)) *service {
	t.Helper()
	cfg := config{
		HTTPAddr:          "127.0.0.1:0",
		DataDir:           t.TempDir(),
		NATSListen:        "127.0.0.1:0",
		DatabaseURL:       databaseURL,
		Sync:              syncInterval,
		StreamBytes:       64 << 20,
		LogLevel:          slog.LevelInfo,
		SelloutSoon:       projections.DefaultSelloutSoon, // ledgerd's defaults
		FulfilmentRiskPct: projections.DefaultFulfilmentRiskPct,
	}
	for _, o := range opts {
		o(&cfg)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := start(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("start ledgerd: %v", err)
	}
	t.Cleanup(func() {
		if err := svc.stop(); err != nil {
			t.Errorf("stop ledgerd: %v", err)
		}
	})
	return svc
}

// testDatabaseURL returns a Postgres URL whose search_path is a fresh schema
// of this test (skipped without Postgres, failed under CI=true).
func testDatabaseURL(t *testing.T) string {
	t.Helper()
	raw, schema := pgtest.Open(t)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestPprofAddr: LEDGER_PPROF_ADDR serves the Go profiles on a listener of
// their own, loopback only; the API does not serve them.
func TestPprofAddr(t *testing.T) {
	_, err := parseConfig(nil, func(k string) string {
		if k == "LEDGER_PPROF_ADDR" {
			return "0.0.0.0:6060"
		}
		return ""
	}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "LEDGER_PPROF_ADDR 0.0.0.0:6060") || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("a wildcard profile address: err %v, want one naming LEDGER_PPROF_ADDR and loopback", err)
	}
	svc := startTestService(t, "", func(c *config) { c.PprofAddr = "127.0.0.1:0" })
	get := func(u string) (int, string) {
		t.Helper()
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	if code, body := get("http://" + svc.pprofAddr + "/debug/pprof/heap?debug=1"); code != http.StatusOK || !strings.Contains(body, "heap profile:") {
		t.Errorf("heap profile: %d %.200q", code, body)
	}
	if code, body := get("http://" + svc.pprofAddr + "/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("goroutine profile: %d %.200q", code, body)
	}
	if code, _ := get("http://" + svc.httpAddr + "/debug/pprof/heap"); code != http.StatusNotFound {
		t.Errorf("the API served /debug/pprof/heap: %d, want 404", code)
	}
}
