package main

import (
	"context"
	"log/slog"
	"path/filepath"
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
