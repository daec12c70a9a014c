package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/consumers"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// runMode measures one durability mode.
func runMode(ctx context.Context, bc benchConfig) (*modeResult, error) {
	mode := bc.child
	bc.fillSizes(mode)
	r := &modeResult{Mode: mode, Sizes: bc.sz}
	if bc.gen.Start.IsZero() {
		bc.gen.Start = time.Now().UTC().Truncate(time.Second)
	}

	dir, err := os.MkdirTemp("", "feedsim-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ns, err := startNATS(dir, mode)
	if err != nil {
		return nil, err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()

	// The feed connects over TCP, as an order feed would; the service in
	// process, as ledgerd does.
	var env modeEnv
	env.feedNC, err = nats.Connect(ns.ClientURL(), nats.Name("feedsim"))
	if err != nil {
		return nil, err
	}
	defer env.feedNC.Close()
	env.svcNC, err = nats.Connect("", nats.InProcessServer(ns), nats.Name("ledgerd"))
	if err != nil {
		return nil, err
	}
	defer env.svcNC.Close()
	if env.js, err = ensureBenchStreams(ctx, env.svcNC, bc.dupWindow); err != nil {
		return nil, err
	}

	schema, drop, err := benchSchema(ctx, bc.databaseURL)
	if err != nil {
		return nil, err
	}
	defer drop()
	env.schema = schema

	if err := runPhases(ctx, bc, env, r); err != nil {
		return nil, err
	}
	return r, nil
}

// modeEnv is what a mode's phases run on: the embedded NATS server's
// connections (the feed's and the service's), the service's JetStream, and
// the mode's fresh Postgres schema.
type modeEnv struct {
	feedNC, svcNC *nats.Conn
	js            jetstream.JetStream
	schema        string
}

// startNATS starts the mode's embedded NATS server with its store in dir
// (SyncAlways in the always mode). The caller shuts it down.
func startNATS(dir, mode string) (*server.Server, error) {
	ns, err := server.NewServer(&server.Options{
		ServerName: "feedsim-bench", Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: dir, SyncAlways: mode == "always", NoSigs: true, NoLog: true, MaxPayload: 1 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		return nil, errors.New("embedded NATS not ready within 30s")
	}
	return ns, nil
}

// ensureBenchStreams creates the ledger's streams and view bucket through
// nc, as ledgerd does (the event stream's duplicate window dupWindow when
// above 0), and returns the JetStream they were created with.
func ensureBenchStreams(ctx context.Context, nc *nats.Conn, dupWindow time.Duration) (jetstream.JetStream, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if err := transport.EnsureStreams(ctx, js, transport.StreamOptions{}); err != nil {
		return nil, err
	}
	if dupWindow > 0 {
		// Diagnostic: nats-server keeps every Nats-Msg-Id of the window in
		// memory; a short window shows what the rest of the process holds.
		cfg := transport.EventStreamConfig(transport.StreamOptions{})
		cfg.Duplicates = dupWindow
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("set the duplicate window to %s: %w", dupWindow, err)
		}
	}
	// The projector writes every changed view to the bucket, as in ledgerd.
	if _, err := transport.EnsureViewBucket(ctx, js, transport.StreamOptions{}); err != nil {
		return nil, err
	}
	return js, nil
}

// benchSchema creates a fresh schema and returns its name and a function
// that drops it.
func benchSchema(ctx context.Context, url string) (string, func(), error) {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "feedsim_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", nil, fmt.Errorf("connect to Postgres (-database-url): %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("create schema %s: %w", schema, err)
	}
	drop := func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(dctx, url)
		if err != nil {
			fmt.Fprintf(os.Stderr, "feedsim: drop schema %s: %v\n", schema, err)
			return
		}
		defer conn.Close(dctx)
		for _, s := range []string{schema, schema + "_rebuild"} {
			if _, err := conn.Exec(dctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{s}.Sanitize()+" CASCADE"); err != nil {
				fmt.Fprintf(os.Stderr, "feedsim: drop schema %s: %v\n", s, err)
			}
		}
	}
	return schema, drop, nil
}

// runPhases runs a mode's phases in order: the baselines, then, with the
// peak RSS reset and the CPU profile on, the service's (end-to-end and
// alert latency on one running projector, then the rebuild), and sets the
// ratios between them.
func runPhases(ctx context.Context, bc benchConfig, env modeEnv, r *modeResult) error {
	if err := benchBaselines(ctx, bc, env, r); err != nil {
		return err
	}

	runtime.GC()
	resetPeakRSS()
	stopProfile := startProfile(bc.cpuProfile, r.Mode)
	store, err := projections.OpenPostgres(ctx, bc.databaseURL, projections.PostgresOptions{Schema: env.schema})
	if err != nil {
		return err
	}
	defer store.Close()
	proj, stopProj, projDone := startProjector(ctx, env, store)
	alerts, err := watchAlerts(env.feedNC)
	if err != nil {
		stopProj()
		return err
	}
	defer alerts.stop()
	if err := benchLive(ctx, bc, env, proj, alerts, r); err != nil {
		stopProj()
		return err
	}
	stopProj()
	if err := <-projDone; err != nil {
		return fmt.Errorf("projector: %w", err)
	}
	if err := benchRebuild(ctx, bc, env.js, env.svcNC, env.schema, r); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	bc.logf(r.Mode, "rebuild: %.0f events/s (%d events)", r.RebuildEPS, r.RebuildEvents)
	stopProfile()
	r.PeakRSSMB = rssMB("VmHWM")
	// After the peak RSS: the sync phase's servers and schemas are its own.
	if err := benchSync(ctx, bc, r); err != nil {
		return fmt.Errorf("sync: %w", err)
	}

	r.setRatios()
	return nil
}

// benchBaselines runs the phases the ledger is compared with: the engine
// alone (raw) and the hot-row Postgres design.
func benchBaselines(ctx context.Context, bc benchConfig, env modeEnv, r *modeResult) error {
	if err := benchRaw(ctx, bc, env.feedNC, r); err != nil {
		return fmt.Errorf("raw: %w", err)
	}
	bc.logf(r.Mode, "raw: publish %.0f/s, read %.0f/s, sync publish %.0f/s", r.RawPublishEPS, r.RawReadEPS, r.RawSyncPublishEPS)
	if err := benchHotrow(ctx, bc, env.schema, r); err != nil {
		return fmt.Errorf("hot row: %w", err)
	}
	bc.logf(r.Mode, "hot row: %.0f orders/s", r.HotrowOps)
	return nil
}

// startProjector runs the ledger's projector over store, as ledgerd does,
// in a goroutine of its own. stop asks it to stop; done then receives what
// its Run returned.
// hooks, when given, observe its batches.
func startProjector(ctx context.Context, env modeEnv, store *projections.PostgresStore, hooks ...consumers.Hooks) (proj *consumers.Projector, stop context.CancelFunc, done <-chan error) {
	quiet := slog.New(slog.DiscardHandler)
	o := consumers.Options{Log: quiet, ViewBucket: transport.ViewBucket, Fold: projections.DefaultFoldConfig()}
	if len(hooks) > 0 {
		o.Hooks = hooks[0]
	}
	proj = consumers.NewProjector(env.svcNC, env.js, store, o)
	pctx, cancel := context.WithCancel(ctx)
	projDone := make(chan error, 1)
	go func() { projDone <- proj.Run(pctx) }()
	return proj, cancel, projDone
}

// benchLive runs the phases that publish the feed to the running
// projector, one generator for both: end-to-end as fast as it goes, then
// alert latency at a steady rate.
func benchLive(ctx context.Context, bc benchConfig, env modeEnv, proj *consumers.Projector, alerts *alertWatch, r *modeResult) error {
	pub, err := transport.NewPublisher(env.feedNC, transport.PublisherOptions{AtomicBatches: r.Mode == "always"})
	if err != nil {
		return err
	}
	g, err := newGenerator(bc.gen)
	if err != nil {
		return err
	}
	if err := benchE2E(ctx, bc, g, pub, proj, alerts, r); err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	r.AlertChangesSeen = alerts.changes()
	r.OutboxBacklog = outboxBacklog(ctx, bc.databaseURL, env.schema)
	bc.logf(r.Mode, "e2e: %.0f events/s (%d events); %d alert changes seen on stock.alerts.>, %d waiting in the outbox", r.E2EEPS, r.E2EEvents, r.AlertChangesSeen, r.OutboxBacklog)
	if err := benchAlerts(ctx, bc, g, pub, proj, env.feedNC, r); err != nil {
		return fmt.Errorf("alerts: %w", err)
	}
	bc.logf(r.Mode, "alerts: p50 %.1f ms, p99 %.1f ms at %.0f events/s (%d samples)", r.AlertP50MS, r.AlertP99MS, r.AlertRateEPS, r.AlertSamples)
	return nil
}
