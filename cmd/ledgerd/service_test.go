package main

import (
	"context"
	"log/slog"
	"net/url"
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
