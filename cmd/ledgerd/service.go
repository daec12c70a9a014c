package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/consumers"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// shutdownTimeout bounds the drain of HTTP requests at shutdown.
const shutdownTimeout = 10 * time.Second

func run(ctx context.Context, args []string, getenv func(string) string) error {
	if len(args) == 1 && args[0] == "healthcheck" {
		return healthcheck(ctx, getenv)
	}
	cfg, err := parseConfig(args, getenv, os.Stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	svc, err := start(ctx, cfg, log)
	if err != nil {
		return err
	}
	return svc.wait()
}

// service is a running ledgerd: its parts and the group that stops them.
type service struct {
	cfg       config
	log       *slog.Logger
	ns        *server.Server // nil with NATS_URL
	nc        *nats.Conn
	ncClosed  chan struct{}
	store     projections.Store
	projector *consumers.Projector
	group     *consumers.Partitioned // with LEDGER_PARTITIONS ≥ 2, in place of projector
	http      *http.Server
	httpAddr  string
	api       *api

	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// start brings every part up, then runs them until ctx ends or one fails.
func start(ctx context.Context, cfg config, log *slog.Logger) (_ *service, err error) {
	svc := &service{cfg: cfg, log: log, done: make(chan struct{})}
	defer func() {
		if err != nil {
			svc.close()
		}
	}()

	if cfg.NATSURL == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("LEDGER_DATA_DIR %s: %w", cfg.DataDir, err)
		}
		if svc.ns, err = startEmbeddedNATS(cfg.DataDir, cfg.NATSListen, cfg.Sync == syncAlways, log); err != nil {
			return nil, err
		}
		if cfg.Sync == syncAlways {
			log.Info("durability: always: JetStream fsyncs every write before it acknowledges; a power loss loses nothing acknowledged")
		} else {
			log.Info("durability: interval: JetStream acknowledges before fsync and syncs every 2 minutes; a process kill loses nothing acknowledged, a power loss can lose up to 2 minutes (LEDGER_SYNC=always closes that)")
		}
	} else {
		log.Info("durability: set by the external NATS server (sync_interval; use R3 streams in a cluster)", "nats_url", redact(cfg.NATSURL))
	}
	if svc.nc, svc.ncClosed, err = connectNATS(svc.ns, cfg.NATSURL, log); err != nil {
		return nil, err
	}
	if err := checkServerVersion(svc.nc.ConnectedServerVersion()); err != nil {
		return nil, err
	}
	js, err := jetstream.New(svc.nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := checkPartitionCount(sctx, js, cfg.Partitions); err != nil {
		return nil, err
	}
	if err := transport.EnsureStreams(sctx, js, transport.StreamOptions{EventMaxBytes: cfg.StreamBytes, Replicas: cfg.Replicas, Partitions: cfg.Partitions}); err != nil {
		return nil, err
	}
	kv, err := transport.EnsureViewBucket(sctx, js, transport.StreamOptions{EventMaxBytes: cfg.StreamBytes, Replicas: cfg.Replicas})
	if err != nil {
		return nil, err
	}
	met := newMetrics()

	popts := consumers.Options{Log: log, Fold: projections.FoldConfig{SelloutSoon: cfg.SelloutSoon},
		ViewBucket: transport.ViewBucket, Hooks: met.hooks()}
	if cfg.DatabaseURL == "" {
		svc.store = projections.NewMemoryStore()
		popts.SkipPublishedAlerts = true
		log.Info("read model: memory, rebuilt from the stream at start (set DATABASE_URL for Postgres)")
	} else {
		if svc.store, err = projections.OpenPostgres(sctx, cfg.DatabaseURL, projections.PostgresOptions{}); err != nil {
			return nil, fmt.Errorf("DATABASE_URL: %w", err)
		}
		log.Info("read model: postgres", "database_url", redact(cfg.DatabaseURL))
	}
	svc.projector = consumers.NewProjector(svc.nc, js, svc.store, popts)
	if svc.group, err = newGroup(cfg, svc.nc, js, svc.store, popts); err != nil {
		return nil, err
	}
	pub, err := transport.NewPublisher(svc.nc, transport.PublisherOptions{AtomicBatches: cfg.Sync == syncAlways})
	if err != nil {
		return nil, err
	}

	guard, err := loadAuth(cfg)
	if err != nil {
		return nil, err
	}
	guard.logMode(log)
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("HTTP cannot listen on %s (LEDGER_HTTP_ADDR): %w", cfg.HTTPAddr, err)
	}
	svc.httpAddr = ln.Addr().String()
	met.registerState(js, svc.projection(), svc.store, log)
	api := &api{log: log, pub: pub, js: js, history: transport.NewHistory(js), store: newStaleStore(svc.store), projector: svc.projection(), nc: svc.nc, durability: svc.durability(),
		kv: kv, fold: popts.Fold, metrics: met, liveStop: make(chan struct{})}
	svc.api = api
	svc.http = &http.Server{
		Handler:           guard.wrap(api.routes()),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	svc.http.RegisterOnShutdown(api.closeLive)
	log.Info("HTTP API listening", "addr", svc.httpAddr, "sellout_soon", cfg.SelloutSoon)

	runCtx, runCancel := context.WithCancel(context.WithoutCancel(ctx))
	svc.cancel = runCancel
	errc := make(chan error, 2)
	projDone := make(chan struct{})
	go func() {
		defer close(projDone)
		if err := svc.runProjection(runCtx); err != nil {
			errc <- fmt.Errorf("projector: %w", err)
		}
	}()
	go func() {
		if err := svc.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("HTTP: %w", err)
		}
	}()
	go func() {
		defer close(svc.done)
		select {
		case <-ctx.Done():
			log.Info("shutting down")
		case <-runCtx.Done():
			log.Info("shutting down")
		case svc.err = <-errc:
			log.Error("stopping", "err", svc.err)
		}
		// HTTP first: no new writes; then the projector finishes its batch.
		hctx, hcancel := context.WithTimeout(context.Background(), shutdownTimeout)
		if err := svc.http.Shutdown(hctx); err != nil {
			log.Warn("HTTP shutdown", "err", err)
		}
		hcancel()
		runCancel()
		<-projDone
		svc.close()
		log.Info("stopped", "applied_seq", svc.projection().Applied())
	}()
	return svc, nil
}

// wait blocks until the service has stopped and returns why, nil for a
// requested stop.
func (s *service) wait() error {
	<-s.done
	return s.err
}

// stop asks the service to stop and waits for it.
func (s *service) stop() error {
	s.cancel()
	return s.wait()
}

// close releases the parts in reverse order of start.
func (s *service) close() {
	if s.store != nil {
		s.store.Close()
	}
	if s.nc != nil {
		if err := s.nc.Drain(); err != nil {
			s.nc.Close()
		}
		select {
		case <-s.ncClosed:
		case <-time.After(shutdownTimeout):
			s.nc.Close()
		}
	}
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}
}

func (s *service) durability() string {
	switch {
	case s.cfg.NATSURL != "":
		return "external"
	case s.cfg.Sync == syncAlways:
		return syncAlways
	}
	return syncInterval
}

// redact hides a password in a URL for logs.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
