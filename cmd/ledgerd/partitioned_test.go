package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"stockledger/projections"
	"strings"
	"testing"
	"time"
)

// TestScenariosPartitioned runs every scenario through a ledgerd whose event
// stream is split into 3 partitions, each folded by a projector of this
// instance's group into Postgres: the command path, the history and the
// subject checks must read the stored (partitioned) subjects.
func TestScenariosPartitioned(t *testing.T) {
	for _, path := range scenarioFiles(t) {
		sc := loadScenario(t, path)
		t.Run(strings.TrimSuffix(filepath.Base(path), ".json"), func(t *testing.T) {
			t.Parallel()
			cfg := config{
				HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), NATSListen: "127.0.0.1:0",
				DatabaseURL: testDatabaseURL(t), Sync: syncInterval, StreamBytes: 64 << 20, LogLevel: slog.LevelInfo,
				Replicas: 1, Partitions: 3, Instance: "scenario", LeaseTTL: 2 * time.Second,
				SelloutSoon: projections.DefaultSelloutSoon, FulfilmentRiskPct: projections.DefaultFulfilmentRiskPct, // ledgerd's defaults
			}
			if err := cfg.checkCluster(); err != nil {
				t.Fatal(err)
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
			runScenario(t, "http://"+svc.httpAddr, sc)
		})
	}
}

// TestClusterSettings checks that the cluster settings are read and that a
// bad one is refused with an error naming it.
func TestClusterSettings(t *testing.T) {
	base := map[string]string{"DATABASE_URL": "postgres://x@db/ledger", "LEDGER_PARTITIONS": "4", "LEDGER_REPLICAS": "3",
		"LEDGER_INSTANCE": "one", "LEDGER_LEASE_TTL": "7s"}
	env := func(over map[string]string) func(string) string {
		return func(k string) string {
			if v, ok := over[k]; ok {
				return v
			}
			return base[k]
		}
	}
	cfg, err := parseConfig(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Partitions != 4 || cfg.Replicas != 3 || cfg.Instance != "one" || cfg.LeaseTTL != 7*time.Second {
		t.Fatalf("config %+v", cfg)
	}
	for _, c := range []struct {
		over map[string]string
		want string
	}{
		{map[string]string{"LEDGER_PARTITIONS": "65"}, "LEDGER_PARTITIONS 65"},
		{map[string]string{"LEDGER_PARTITIONS": "0"}, "LEDGER_PARTITIONS 0"},
		{map[string]string{"LEDGER_PARTITIONS": "two"}, "LEDGER_PARTITIONS -1"},
		{map[string]string{"DATABASE_URL": ""}, "needs DATABASE_URL"},
		{map[string]string{"LEDGER_REPLICAS": "9"}, "LEDGER_REPLICAS 9"},
		{map[string]string{"LEDGER_LEASE_TTL": "soon"}, "LEDGER_LEASE_TTL"},
		{map[string]string{"LEDGER_LEASE_TTL": "10ms"}, "LEDGER_LEASE_TTL 10ms"},
	} {
		_, err := parseConfig(nil, env(c.over), io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want one naming %q", c.over, err, c.want)
		}
	}
	// The default stays the single-instance mode.
	cfg, err = parseConfig(nil, func(string) string { return "" }, io.Discard)
	if err != nil || cfg.Partitions != 1 || cfg.Replicas != 1 {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}
}
