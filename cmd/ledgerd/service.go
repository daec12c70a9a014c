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
	js        jetstream.JetStream
	kv        jetstream.KeyValue // the view bucket
	store     projections.Store
	projector *consumers.Projector
	group     *consumers.Partitioned // with LEDGER_PARTITIONS ≥ 2, in place of projector
	http      *http.Server
	httpAddr  string
	pprofAddr string // with LEDGER_PPROF_ADDR
	stopPprof func()
	api       *api
	probes    *probeCache // of NATS and the store, for /healthz

	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// setupTimeout bounds the setup of the streams, the view bucket and the
// read model at start; past it ledgerd does not start.
const setupTimeout = 30 * time.Second

// start brings every part up, then runs them until ctx ends or one fails.
func start(ctx context.Context, cfg config, log *slog.Logger) (_ *service, err error) {
	svc := &service{cfg: cfg, log: log, done: make(chan struct{})}
	defer func() {
		if err != nil {
			svc.close()
		}
	}()
	if err := svc.connect(); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	if err := svc.ensureStreams(sctx); err != nil {
		return nil, err
	}
	met := newMetrics()
	popts, err := svc.openReadModel(sctx, met)
	if err != nil {
		return nil, err
	}
	target, err := svc.startTarget(sctx)
	if err != nil {
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
	if cfg.PprofAddr != "" {
		if svc.pprofAddr, svc.stopPprof, err = startPprof(cfg.PprofAddr, log); err != nil {
			ln.Close()
			return nil, err
		}
	}
	svc.probes = newProbeCache(natsProbe{nc: svc.nc, js: svc.js}, svc.store)
	met.registerState(svc.probes, svc.projection(), svc.partitionStates(), svc.store, log)
	svc.api = svc.newAPI(pub, popts.Fold, met, target)
	svc.http = newHTTPServer(svc.api.handler(guard), log)
	svc.http.RegisterOnShutdown(svc.api.live.closeLive)
	log.Info("HTTP API listening", "addr", svc.httpAddr, "sellout_soon", cfg.SelloutSoon)
	svc.run(ctx, ln)
	return svc, nil
}

// connect starts the embedded NATS server (without NATS_URL) and connects
// to it or to NATS_URL.
func (s *service) connect() (err error) {
	cfg, log := s.cfg, s.log
	if cfg.NATSURL == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return fmt.Errorf("LEDGER_DATA_DIR %s: %w", cfg.DataDir, err)
		}
		if s.ns, err = startEmbeddedNATS(cfg.DataDir, cfg.NATSListen, cfg.Sync == syncAlways, log); err != nil {
			return err
		}
		if cfg.Sync == syncAlways {
			log.Info("durability: always: JetStream fsyncs every write before it acknowledges; a power loss loses nothing acknowledged")
		} else {
			log.Info("durability: interval: JetStream acknowledges before fsync and syncs every 2 minutes; a process kill loses nothing acknowledged, a power loss can lose up to 2 minutes (LEDGER_SYNC=always closes that)")
		}
	} else {
		log.Info("durability: set by the external NATS server (sync_interval; use R3 streams in a cluster)", "nats_url", redact(cfg.NATSURL))
	}
	if s.nc, s.ncClosed, err = connectNATS(s.ns, cfg.NATSURL, log); err != nil {
		return err
	}
	if err := checkServerVersion(s.nc.ConnectedServerVersion()); err != nil {
		return err
	}
	if s.js, err = jetstream.New(s.nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return nil
}

// ensureStreams creates or updates the streams and the view bucket.
func (s *service) ensureStreams(ctx context.Context) (err error) {
	cfg := s.cfg
	if err := checkPartitionCount(ctx, s.js, cfg.Partitions); err != nil {
		return err
	}
	if err := transport.EnsureStreams(ctx, s.js, transport.StreamOptions{EventMaxBytes: cfg.StreamBytes, Replicas: cfg.Replicas, Partitions: cfg.Partitions, DuplicateWindow: cfg.DuplicateWindow}); err != nil {
		return err
	}
	s.kv, err = transport.EnsureViewBucket(ctx, s.js, transport.StreamOptions{EventMaxBytes: cfg.StreamBytes, Replicas: cfg.Replicas})
	return err
}

// openReadModel opens the read model (memory, or Postgres with
// DATABASE_URL) and makes the projector, or this instance's member of the
// partitioned group, that writes it. It returns the projector's options.
func (s *service) openReadModel(ctx context.Context, met *metrics) (consumers.Options, error) {
	cfg, log := s.cfg, s.log
	popts := consumers.Options{Log: log, Fold: projections.FoldConfig{SelloutSoon: cfg.SelloutSoon, FulfilmentRiskPct: cfg.FulfilmentRiskPct},
		ViewBucket: transport.ViewBucket, Hooks: met.hooks()}
	if cfg.DatabaseURL == "" {
		s.store = projections.NewMemoryStore()
		popts.SkipPublishedAlerts = true
		log.Info("read model: memory, rebuilt from the stream at start (set DATABASE_URL for Postgres)")
	} else {
		var err error
		if s.store, err = projections.OpenPostgres(ctx, cfg.DatabaseURL, projections.PostgresOptions{}); err != nil {
			return popts, fmt.Errorf("DATABASE_URL: %w", err)
		}
		log.Info("read model: postgres", "database_url", redact(cfg.DatabaseURL))
	}
	s.projector = consumers.NewProjector(s.nc, s.js, s.store, popts)
	var err error
	s.group, err = newGroup(cfg, s.nc, s.js, s.store, popts)
	return popts, err
}

// startTarget returns how far the projection must apply the event stream
// before reads are answered (see startGate): the stream's last sequence
// for a memory read model, which is rebuilt from sequence 1; 0 for a read
// model that persists, which never goes back.
func (s *service) startTarget(ctx context.Context) (uint64, error) {
	if s.cfg.DatabaseURL != "" {
		if rebuilding, err := s.rebuilding(ctx); err != nil || !rebuilding {
			return 0, err
		}
	}
	st, err := s.js.Stream(ctx, transport.EventStream)
	if err != nil {
		return 0, fmt.Errorf("look up stream %s: %w", transport.EventStream, err)
	}
	target := st.CachedInfo().State.LastSeq
	if target > 0 {
		s.log.Info("reads wait until the read model has applied the event stream as far as it goes", "target_seq", target)
	}
	return target, nil
}

// rebuilding reports whether a Postgres read model starts empty (new, or
// emptied by a migration that rebuilds it): every projector's checkpoint is
// 0. Then it is folded from the stream's first event, and reads wait for it
// as a memory read model's do, rather than go back in time.
func (s *service) rebuilding(ctx context.Context) (bool, error) {
	names := []string{consumers.DefaultName}
	if s.cfg.Partitions > 1 {
		names = names[:0]
		for part := range s.cfg.Partitions {
			names = append(names, consumers.PartitionName(consumers.DefaultName, part))
		}
	}
	for _, name := range names {
		ckpt, err := s.store.Checkpoint(ctx, name)
		if err != nil {
			return false, fmt.Errorf("read checkpoint %s: %w", name, err)
		}
		if ckpt > 0 {
			return false, nil
		}
	}
	return true, nil
}

// newAPI wires the HTTP layer to the parts: each handler group gets only
// the interfaces it uses.
func (s *service) newAPI(pub *transport.Publisher, fold projections.FoldConfig, met *metrics, target uint64) *api {
	p := s.projection()
	wait := &readWait{gate: newStartGate(p, target), progress: p}
	m := newStaleModel(s.store, p)
	hist := &historyAPI{log: s.log, history: streamHistory{History: transport.NewHistory(s.js), fold: fold}, progress: p, wait: wait}
	return &api{
		log:     s.log,
		metrics: met,
		history: hist,
		events:  &eventsAPI{log: s.log, appender: catalogAppender{pub: pub, catalog: p}, progress: p, metrics: met},
		reads:   &readAPI{log: s.log, model: m, wait: wait, history: hist},
		live: &liveAPI{log: s.log, source: jetstreamLive{js: s.js, kv: s.kv}, model: m, wait: wait, metrics: met,
			stop: make(chan struct{})},
		health: &healthAPI{log: s.log, probes: s.probes, projection: p, parts: s.partitionStates(),
			gate: wait.gate, durability: s.durability(), maxLag: s.cfg.healthMaxLag()},
	}
}

// HTTP server bounds: a client slower than these is cut off.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpReadTimeout       = 30 * time.Second
	httpWriteTimeout      = 60 * time.Second
	httpIdleTimeout       = 2 * time.Minute
	httpHeaderBytesMax    = 64 << 10
)

func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpHeaderBytesMax,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// run runs the projection and HTTP until ctx ends, stop is called or one
// of them fails; then it stops both (HTTP first) and closes the parts.
func (s *service) run(ctx context.Context, ln net.Listener) {
	runCtx, runCancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = runCancel
	errc := make(chan error, 2)
	projDone := make(chan struct{})
	go s.probes.run(runCtx)
	go func() {
		defer close(projDone)
		if err := s.runProjection(runCtx); err != nil {
			errc <- fmt.Errorf("projector: %w", err)
		}
	}()
	go func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("HTTP: %w", err)
		}
	}()
	go func() {
		defer close(s.done)
		select {
		case <-ctx.Done():
			s.log.Info("shutting down")
		case <-runCtx.Done():
			s.log.Info("shutting down")
		case s.err = <-errc:
			s.log.Error("stopping", "err", s.err)
		}
		// HTTP first: no new writes; then the projector finishes its batch.
		hctx, hcancel := context.WithTimeout(context.Background(), shutdownTimeout)
		if err := s.http.Shutdown(hctx); err != nil {
			s.log.Warn("HTTP shutdown", "err", err)
		}
		hcancel()
		runCancel()
		<-projDone
		s.close()
		s.log.Info("stopped", "applied_seq", s.projection().Applied())
	}()
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
	if s.stopPprof != nil {
		s.stopPprof()
	}
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
