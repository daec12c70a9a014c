package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/consumers"
	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// Bench bounds and fixed settings.
const (
	// defaultDatabaseURL is the local Postgres of the README.
	defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	// rawInFlight is the async publish window of the raw baseline: the
	// ledger publisher's own default, so that both sides get the same.
	rawInFlight = transport.DefaultMaxInFlight
	// rawStream and rawSubjectRoot hold the raw baseline's copy of the feed.
	rawStream      = "RAW_EVENTS"
	rawSubjectRoot = "raw.events"
	// alertRate is the steady rate of the alert-latency phase (the target's),
	// and
	// probeEvery puts one probe sale among that many events.
	alertRate  = 5_000
	probeEvery = 10
	// alertWarmup is left out of the latency figures.
	alertWarmup = time.Second
	// alertArrivalMax bounds the wait for the probes' alerts once the
	// projector has caught up.
	alertArrivalMax = 10 * time.Second
	// catchUpMax bounds the wait for the projector to catch up.
	catchUpMax = 10 * time.Minute
	// hotrowClientsMax bounds -hotrow-clients (Postgres' max_connections
	// is 100 by default and other users share it).
	hotrowClientsMax = 90
	// hotrowSalesMax bounds the sales the hot-row phase prepares.
	hotrowSalesMax = 2_000_000
	// rssMarkEvery is how often (in events applied) the e2e phase records
	// the process's RSS.
	rssMarkEvery = 500_000
	// childStopWait bounds a mode's cleanup after the bench is interrupted.
	childStopWait = time.Minute
	// probeShop and probeSKU are the SKU the alert phase sells past stock.
	probeShop, probeSKU = "shop-probe", "probe-1"
)

// sizes are the amounts of work of one mode, stated in the output.
type sizes struct {
	RawEvents      int     `json:"raw_events"`
	RawSyncSeconds float64 `json:"raw_sync_seconds"`
	E2EEvents      int     `json:"e2e_events"`
	HotrowSeconds  float64 `json:"hotrow_seconds"`
	HotrowClients  int     `json:"hotrow_clients"`
	AlertSeconds   float64 `json:"alert_seconds"`
}

// modeResult is what one durability mode measured.
type modeResult struct {
	Mode  string `json:"mode"`
	Sizes sizes  `json:"sizes"`

	RawPublishEPS     float64 `json:"raw_publish_eps"`
	RawReadEPS        float64 `json:"raw_read_eps"`
	RawSyncPublishEPS float64 `json:"raw_sync_publish_eps"`
	E2EEPS            float64 `json:"e2e_eps"`
	E2EEvents         uint64  `json:"e2e_events_applied"`
	HotrowOps         float64 `json:"hotrow_ops"`
	AlertP50MS        float64 `json:"alert_p50_ms"`
	AlertP99MS        float64 `json:"alert_p99_ms"`
	// AlertTargetEPS is the steady rate asked for: alertRate, or half the
	// raw async publish rate when that is lower (sync on every write).
	AlertTargetEPS float64 `json:"alert_target_eps"`
	AlertRateEPS   float64 `json:"alert_rate_eps"`
	AlertSamples   int     `json:"alert_samples"`
	// AlertChangesSeen counts alert changes that arrived on stock.alerts.>
	// during the e2e phase; OutboxBacklog the changes committed but not yet
	// published when that phase caught up.
	AlertChangesSeen int     `json:"alert_changes_seen_e2e"`
	OutboxBacklog    int64   `json:"alert_outbox_backlog_e2e"`
	RebuildEPS       float64 `json:"rebuild_eps"`
	RebuildEvents    uint64  `json:"rebuild_events"`
	PeakRSSMB        float64 `json:"peak_rss_mb"`
	// RSSMB maps events applied (e2e) to the process's RSS then, and
	// LiveHeapMB to its Go heap's live bytes as of the last collection.
	RSSMB      map[string]float64 `json:"rss_mb_at_events,omitempty"`
	LiveHeapMB map[string]float64 `json:"live_heap_mb_at_events,omitempty"`
	// OrdersHeld maps events applied to the orders the projector held in
	// memory then (consumers.Projector.Held).
	OrdersHeld map[string]int64 `json:"orders_held_at_events,omitempty"`

	E2EVsRaw      float64 `json:"e2e_vs_raw"`
	E2EVsHotrow   float64 `json:"e2e_vs_hotrow"`
	RebuildVsRead float64 `json:"rebuild_vs_read"`
	E2EVsRawSync  float64 `json:"e2e_vs_raw_sync"`
}

type benchReport struct {
	Machine map[string]string      `json:"machine"`
	Command string                 `json:"command"`
	Modes   map[string]*modeResult `json:"modes"`
}

type benchConfig struct {
	gen         genConfig
	start       string
	quick       bool
	jsonFile    string
	databaseURL string
	modes       string
	child       string
	sz          sizes
	cpuProfile  string
	dupWindow   time.Duration
	// progress receives the progress line; nil prints none.
	progress io.Writer
}

// flashSaleGenConfig is the bench's feed: the default feed with link drops
// most of the time, so that most sales hit one SKU, as in a flash sale.
func flashSaleGenConfig() genConfig {
	c := defaultGenConfig()
	c.DropEvery, c.DropLen, c.DropShare = 10_000, 8_000, 0.9
	return c
}

// runBench runs each durability mode in a child process of its own (so that
// its peak RSS is its own) and prints the table.
func runBench(ctx context.Context, args []string, getenv func(string) string) error {
	bc, err := parseBenchFlags(args, getenv)
	if err != nil {
		return err
	}
	if bc.child != "" {
		r, err := runMode(ctx, bc)
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(r)
	}
	modes := strings.Split(bc.modes, ",")
	for _, m := range modes {
		if m != "interval" && m != "always" {
			return fmt.Errorf("-modes %q: each must be interval or always", bc.modes)
		}
	}
	rep, err := runModes(ctx, bc, args, modes)
	if err != nil {
		return err
	}
	printTable(os.Stdout, rep, modes)
	return writeJSON(bc.jsonFile, rep)
}

// parseBenchFlags reads the bench's flags from args, with DATABASE_URL from
// getenv as the default of -database-url, and checks them.
func parseBenchFlags(args []string, getenv func(string) string) (benchConfig, error) {
	bc := benchConfig{gen: flashSaleGenConfig(), progress: os.Stderr}
	fs := flag.NewFlagSet("feedsim bench", flag.ContinueOnError)
	genFlags(fs, &bc.gen, &bc.start)
	dbDefault := getenv("DATABASE_URL")
	if dbDefault == "" {
		dbDefault = defaultDatabaseURL
	}
	fs.BoolVar(&bc.quick, "quick", false, "small sizes: finishes within 60 seconds")
	fs.StringVar(&bc.jsonFile, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&bc.databaseURL, "database-url", dbDefault, "Postgres for the read model and the hot-row baseline; a fresh schema per mode, dropped after (DATABASE_URL)")
	fs.StringVar(&bc.modes, "modes", "interval,always", "durability modes to run, comma-separated")
	fs.StringVar(&bc.child, "child", "", "internal: run one mode and write its JSON to stdout")
	fs.IntVar(&bc.sz.E2EEvents, "events", 0, "events of the end-to-end phase (0: by -quick and mode)")
	fs.IntVar(&bc.sz.RawEvents, "raw-events", 0, "events of the raw publish phase (0: by -quick and mode)")
	fs.IntVar(&bc.sz.HotrowClients, "hotrow-clients", 32, fmt.Sprintf("concurrent clients of the hot-row baseline, at most %d", hotrowClientsMax))
	fs.StringVar(&bc.cpuProfile, "cpuprofile", "", "write a CPU profile of each mode's end-to-end and rebuild phases to FILE.<mode>")
	fs.DurationVar(&bc.dupWindow, "dup-window", 0, "diagnostic: the event stream's duplicate window instead of the ledger's "+transport.DuplicateWindow.String()+" (its message ids are held in memory)")
	if err := fs.Parse(args); err != nil {
		return bc, err
	}
	if err := parseStart(&bc.gen, bc.start); err != nil {
		return bc, err
	}
	if bc.sz.HotrowClients < 1 || bc.sz.HotrowClients > hotrowClientsMax {
		return bc, fmt.Errorf("-hotrow-clients %d: must be 1 to %d", bc.sz.HotrowClients, hotrowClientsMax)
	}
	return bc, nil
}

// runModes runs each of modes in a child process, one after the other, and
// gathers their results with the machine's description.
func runModes(ctx context.Context, bc benchConfig, args, modes []string) (*benchReport, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	rep := &benchReport{Machine: machine(ctx, bc.databaseURL), Command: "feedsim bench " + strings.Join(args, " "), Modes: map[string]*modeResult{}}
	for _, m := range modes {
		r, err := runModeChild(ctx, self, m, args)
		if err != nil {
			return nil, err
		}
		rep.Modes[m] = r
	}
	return rep, nil
}

// runModeChild runs mode in a child process of self, given the bench's own
// args, and reads the child's result from its stdout; the child's stderr
// (its progress lines) goes to ours.
func runModeChild(ctx context.Context, self, mode string, args []string) (*modeResult, error) {
	childArgs := append([]string{"bench", "-child", mode}, args...)
	cmd := exec.CommandContext(ctx, self, childArgs...)
	// Stopped, the child is interrupted rather than killed, so that it
	// drops its schema and removes its store directory.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = childStopWait
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("mode %s: %w", mode, err)
	}
	var r modeResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("mode %s: read result: %w", mode, err)
	}
	return &r, nil
}

// writeJSON writes rep, indented, to file when file is set.
func writeJSON(file string, rep *benchReport) error {
	if file == "" {
		return nil
	}
	data, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(file, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("-json %s: %w", file, err)
	}
	return nil
}

func machine(ctx context.Context, dbURL string) map[string]string {
	m := map[string]string{"go": runtime.Version(), "nproc": fmt.Sprint(runtime.NumCPU()), "nats_server": server.VERSION}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		m["mem"] = strings.Join(strings.Fields(strings.SplitN(string(data), "\n", 2)[0])[1:], " ")
	}
	if conn, err := pgx.Connect(ctx, dbURL); err == nil {
		var v string
		if conn.QueryRow(ctx, "SHOW server_version").Scan(&v) == nil {
			m["postgres"] = v
		}
		conn.Close(ctx)
	}
	return m
}

func printTable(w io.Writer, rep *benchReport, modes []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "figure\t%s\t\n", strings.Join(modes, "\t"))
	row := func(name, format string, get func(*modeResult) float64) {
		fmt.Fprintf(tw, "%s", name)
		for _, m := range modes {
			fmt.Fprintf(tw, "\t"+format, get(rep.Modes[m]))
		}
		fmt.Fprintf(tw, "\t\n")
	}
	row("raw_publish_eps", "%.0f", func(r *modeResult) float64 { return r.RawPublishEPS })
	row("raw_read_eps", "%.0f", func(r *modeResult) float64 { return r.RawReadEPS })
	row("raw_sync_publish_eps", "%.0f", func(r *modeResult) float64 { return r.RawSyncPublishEPS })
	row("e2e_eps", "%.0f", func(r *modeResult) float64 { return r.E2EEPS })
	row("hotrow_ops", "%.0f", func(r *modeResult) float64 { return r.HotrowOps })
	row("alert_p50_ms", "%.1f", func(r *modeResult) float64 { return r.AlertP50MS })
	row("alert_p99_ms", "%.1f", func(r *modeResult) float64 { return r.AlertP99MS })
	row("alert_target_eps", "%.0f", func(r *modeResult) float64 { return r.AlertTargetEPS })
	row("alert_rate_eps", "%.0f", func(r *modeResult) float64 { return r.AlertRateEPS })
	row("rebuild_eps", "%.0f", func(r *modeResult) float64 { return r.RebuildEPS })
	row("peak_rss_mb", "%.0f", func(r *modeResult) float64 { return r.PeakRSSMB })
	row("e2e_vs_raw", "%.2f", func(r *modeResult) float64 { return r.E2EVsRaw })
	row("e2e_vs_hotrow", "%.1f", func(r *modeResult) float64 { return r.E2EVsHotrow })
	row("rebuild_vs_read", "%.2f", func(r *modeResult) float64 { return r.RebuildVsRead })
	row("e2e_vs_raw_sync", "%.2f", func(r *modeResult) float64 { return r.E2EVsRawSync })
	tw.Flush()
	for _, m := range modes {
		r := rep.Modes[m]
		fmt.Fprintf(w, "%s sizes: raw %d events, raw sync %.0fs, e2e %d events (%d applied incl. setup), hot row %.0fs × %d clients, alerts %.0fs at %.0f ev/s, rebuild %d events\n",
			m, r.Sizes.RawEvents, r.Sizes.RawSyncSeconds, r.Sizes.E2EEvents, r.E2EEvents, r.Sizes.HotrowSeconds, r.Sizes.HotrowClients, r.Sizes.AlertSeconds, r.AlertTargetEPS, r.RebuildEvents)
		if len(r.RSSMB) > 0 {
			fmt.Fprintf(w, "%s rss_mb_at_events: %v\n", m, r.RSSMB)
			fmt.Fprintf(w, "%s live_heap_mb_at_events: %v\n", m, r.LiveHeapMB)
			fmt.Fprintf(w, "%s orders_held_at_events: %v\n", m, r.OrdersHeld)
		}
	}
}

func (bc *benchConfig) fillSizes(mode string) {
	sz := &bc.sz
	always := mode == "always"
	def := func(v *int, quickInterval, quickAlways, fullInterval, fullAlways int) {
		if *v > 0 {
			return
		}
		switch {
		case bc.quick && always:
			*v = quickAlways
		case bc.quick:
			*v = quickInterval
		case always:
			*v = fullAlways
		default:
			*v = fullInterval
		}
	}
	def(&sz.RawEvents, 100_000, 15_000, 500_000, 60_000)
	def(&sz.E2EEvents, 60_000, 20_000, 1_000_000, 200_000)
	secs := func(v *float64, quick, full float64) {
		switch {
		case *v > 0:
		case bc.quick:
			*v = quick
		default:
			*v = full
		}
	}
	secs(&sz.RawSyncSeconds, 2, 5)
	secs(&sz.HotrowSeconds, 3, 10)
	secs(&sz.AlertSeconds, 4, 20)
}

// logf writes a phase line to bc.progress, if set.
func (bc *benchConfig) logf(mode, format string, args ...any) {
	if bc.progress != nil {
		fmt.Fprintf(bc.progress, "feedsim bench [%s] %s\n", mode, fmt.Sprintf(format, args...))
	}
}

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
// nc, as ledgerd does, and returns the JetStream they were created with.
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
func startProjector(ctx context.Context, env modeEnv, store *projections.PostgresStore) (proj *consumers.Projector, stop context.CancelFunc, done <-chan error) {
	quiet := slog.New(slog.DiscardHandler)
	proj = consumers.NewProjector(env.svcNC, env.js, store, consumers.Options{Log: quiet, ViewBucket: transport.ViewBucket,
		Fold: projections.FoldConfig{SelloutSoon: projections.DefaultSelloutSoon}})
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

// outboxBacklog counts the alert changes waiting in the outbox; -1 when it
// cannot tell.
func outboxBacklog(ctx context.Context, url, schema string) int64 {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return -1
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, "alert_outbox"}.Sanitize()).Scan(&n); err != nil {
		return -1
	}
	return n
}

// setRatios sets the ratios of r's figures that the table compares.
func (r *modeResult) setRatios() {
	r.E2EVsRaw = ratio(r.E2EEPS, r.RawPublishEPS)
	r.E2EVsHotrow = ratio(r.E2EEPS, r.HotrowOps)
	r.RebuildVsRead = ratio(r.RebuildEPS, r.RawReadEPS)
	r.E2EVsRawSync = ratio(r.E2EEPS, r.RawSyncPublishEPS)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
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

// benchRaw measures the engine alone: async publish of the feed's payloads
// to a stream configured as STOCK_EVENTS, an ordered consumer reading them
// back, and synchronous publishing one message at a time.
func benchRaw(ctx context.Context, bc benchConfig, nc *nats.Conn, r *modeResult) error {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(rawInFlight), jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		return err
	}
	cfg := transport.EventStreamConfig(transport.StreamOptions{})
	cfg.Name, cfg.Subjects = rawStream, []string{rawSubjectRoot + ".>"}
	stream, err := js.CreateStream(ctx, cfg)
	if err != nil {
		return fmt.Errorf("create stream %s: %w", rawStream, err)
	}
	defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), rawStream) }()

	feed, err := newRawFeed(bc.gen)
	if err != nil {
		return err
	}
	n := bc.sz.RawEvents
	if r.RawPublishEPS, err = rawPublishAsync(ctx, js, feed, n); err != nil {
		return err
	}
	if r.RawReadEPS, err = rawReadBack(ctx, stream, n); err != nil {
		return err
	}
	// Synchronous, one message at a time: what a feed without batching or
	// async gets, and the yardstick of the SyncAlways target.
	r.RawSyncPublishEPS, err = rawPublishSync(ctx, js, feed, bc.sz.RawSyncSeconds)
	return err
}

// rawFeed hands out the feed as the raw baseline publishes it: the setup,
// then the generator's events, each as a message on rawSubjectRoot.
type rawFeed struct {
	g       *generator
	pending []ledger.Event
}

func newRawFeed(c genConfig) (*rawFeed, error) {
	g, err := newGenerator(c)
	if err != nil {
		return nil, err
	}
	return &rawFeed{g: g, pending: g.Setup()}, nil
}

// next returns the next event's message and its message id.
func (f *rawFeed) next() (*nats.Msg, jetstream.PublishOpt, error) {
	for len(f.pending) == 0 {
		f.pending = f.g.Next(f.pending[:0:0])
	}
	e := f.pending[0]
	f.pending = f.pending[1:]
	return rawMsg(&e)
}

// rawMsg encodes e as the raw baseline's message, with the id the ledger's
// publisher would give it.
func rawMsg(e *ledger.Event) (*nats.Msg, jetstream.PublishOpt, error) {
	if e.ID == "" {
		return nil, nil, errors.New("event without id")
	}
	data, err := ledger.EncodeEvent(e)
	if err != nil {
		return nil, nil, err
	}
	return &nats.Msg{Subject: rawSubjectRoot + "." + e.Shop + "." + e.SKU, Data: data}, jetstream.WithMsgID(e.IdempotencyKey()), nil
}

// rawPublishAsync publishes n messages of feed asynchronously and returns
// the messages per second until the last is acknowledged.
func rawPublishAsync(ctx context.Context, js jetstream.JetStream, feed *rawFeed, n int) (float64, error) {
	begin := time.Now()
	for i := range n {
		if i%ledger.MaxBatch == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		m, opt, err := feed.next()
		if err != nil {
			return 0, err
		}
		if _, err := js.PublishMsgAsync(m, opt, jetstream.WithStallWait(30*time.Second)); err != nil {
			return 0, fmt.Errorf("publish async: %w", err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(catchUpMax):
		return 0, errors.New("async publishes not acknowledged in time")
	}
	return float64(n) / time.Since(begin).Seconds(), nil
}

// rawReadBack reads the first n messages of stream with an ordered consumer
// and returns the messages per second.
func rawReadBack(ctx context.Context, stream jetstream.Stream, n int) (float64, error) {
	begin := time.Now()
	oc, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return 0, err
	}
	it, err := oc.Messages(jetstream.PullMaxMessages(2000))
	if err != nil {
		return 0, err
	}
	for i := 0; i < n; i++ {
		if _, err := it.Next(); err != nil {
			it.Stop()
			return 0, fmt.Errorf("read back message %d: %w", i+1, err)
		}
	}
	it.Stop()
	return float64(n) / time.Since(begin).Seconds(), nil
}

// rawPublishSync publishes feed's messages one at a time, each waiting for
// its ack, for seconds, and returns the messages per second.
func rawPublishSync(ctx context.Context, js jetstream.JetStream, feed *rawFeed, seconds float64) (float64, error) {
	count := 0
	begin := time.Now()
	for time.Since(begin).Seconds() < seconds && ctx.Err() == nil {
		m, opt, err := feed.next()
		if err != nil {
			return 0, err
		}
		if _, err := js.PublishMsg(ctx, m, opt); err != nil {
			return 0, fmt.Errorf("publish: %w", err)
		}
		count++
	}
	return float64(count) / time.Since(begin).Seconds(), nil
}

// benchHotrow measures the usual alternative: one stock row per SKU, each
// sale of the same feed one transaction that takes the units off the row if
// enough are left.
func benchHotrow(ctx context.Context, bc benchConfig, schema string, r *modeResult) error {
	pool, err := openHotrowPool(ctx, bc.databaseURL, schema, bc.sz.HotrowClients)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE hotrow_stock (sku text PRIMARY KEY, qty bigint NOT NULL)`); err != nil {
		return err
	}
	g, err := newGenerator(bc.gen)
	if err != nil {
		return err
	}
	if err := stockHotrow(ctx, pool, g); err != nil {
		return err
	}
	sales := hotrowSales(g, bc.sz.HotrowSeconds)
	duration := time.Duration(bc.sz.HotrowSeconds * float64(time.Second))
	ops, err := runHotrowClients(ctx, pool, sales, bc.sz.HotrowClients, duration)
	if err != nil {
		return err
	}
	r.HotrowOps = ops
	return nil
}

// openHotrowPool opens a pool to url of at most one connection per client,
// with schema as the search path.
func openHotrowPool(ctx context.Context, url, schema string, clients int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(clients)
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	return pgxpool.NewWithConfig(ctx, cfg)
}

// stockHotrow inserts the stock row of each of g's SKUs.
func stockHotrow(ctx context.Context, pool *pgxpool.Pool, g *generator) error {
	// Every SKU starts with more units than the run can sell, so that every
	// order takes the row lock and changes it (the costly path).
	var keys []string
	for _, s := range g.skus {
		keys = append(keys, s.shop+"/"+s.sku)
	}
	_, err := pool.Exec(ctx, `INSERT INTO hotrow_stock SELECT unnest($1::text[]), 1000000000`, keys)
	return err
}

// hotrowSale is one sale of the feed as the hot-row baseline applies it.
type hotrowSale struct {
	key string
	qty int64
}

// hotrowSales takes the sales of g's feed, enough for seconds of the phase
// and at most hotrowSalesMax.
func hotrowSales(g *generator, seconds float64) []hotrowSale {
	var sales []hotrowSale
	buf := make([]ledger.Event, 0, 8)
	for len(sales) < hotrowSalesMax && len(sales) < int(seconds*50_000) {
		buf = g.Next(buf[:0])
		for _, e := range buf {
			if e.Type == ledger.Sale {
				sales = append(sales, hotrowSale{e.Shop + "/" + e.SKU, *e.Qty})
			}
		}
	}
	return sales
}

// runHotrowClients applies sales in order from clients goroutines, each
// sale one UPDATE, until duration has passed or the sales run out, and
// returns the sales applied per second.
func runHotrowClients(ctx context.Context, pool *pgxpool.Pool, sales []hotrowSale, clients int, duration time.Duration) (float64, error) {
	var next, done atomic.Int64
	deadline := time.Now().Add(duration)
	var wg sync.WaitGroup
	errc := make(chan error, clients)
	begin := time.Now()
	for range clients {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				i := next.Add(1) - 1
				if i >= int64(len(sales)) {
					return
				}
				s := sales[i]
				if _, err := pool.Exec(ctx, `UPDATE hotrow_stock SET qty = qty - $1 WHERE sku = $2 AND qty >= $1`, s.qty, s.key); err != nil {
					errc <- err
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	select {
	case err := <-errc:
		return 0, err
	default:
	}
	return float64(done.Load()) / elapsed.Seconds(), nil
}

// benchE2E publishes the feed through the ledger's publisher as fast as it
// goes and waits until the projector has applied every event.
func benchE2E(ctx context.Context, bc benchConfig, g *generator, pub *transport.Publisher, proj *consumers.Projector, alerts *alertWatch, r *modeResult) error {
	var last atomic.Uint64
	onAck := func(_ ledger.Event, a transport.Ack, _ time.Time) {
		if a.Seq > last.Load() {
			last.Store(a.Seq)
		}
	}
	r.RSSMB, r.LiveHeapMB, r.OrdersHeld = map[string]float64{}, map[string]float64{}, map[string]int64{}
	stopMarks := make(chan struct{})
	marksDone := make(chan struct{})
	go func() {
		defer close(marksDone)
		mark := uint64(rssMarkEvery)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopMarks:
				return
			case <-t.C:
			}
			if proj.Applied() >= mark {
				rss, live := rssMB("VmRSS"), liveHeapMB()
				_, held := proj.Held()
				r.RSSMB[fmt.Sprint(mark)], r.LiveHeapMB[fmt.Sprint(mark)], r.OrdersHeld[fmt.Sprint(mark)] = rss, live, held
				bc.logf(r.Mode, "e2e: %d events applied, RSS %.0f MB, live heap %.0f MB, orders held by the projector %d", mark, rss, live, held)
				mark += rssMarkEvery
			}
		}
	}()
	lag := func() string { return fmt.Sprint(last.Load() - min(last.Load(), proj.Applied())) }
	begin := time.Now()
	n, err := publishPaced(ctx, pub, g, rateMax, durationMax, bc.sz.E2EEvents, bc.progress, lag, alerts.open, onAck)
	if err != nil {
		close(stopMarks)
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, catchUpMax)
	defer cancel()
	err = proj.WaitApplied(wctx, last.Load())
	elapsed := time.Since(begin)
	close(stopMarks)
	<-marksDone
	if err != nil {
		return err
	}
	r.E2EEvents = last.Load()
	r.E2EEPS = float64(n) / elapsed.Seconds()
	r.RSSMB[fmt.Sprintf("%d (end)", r.E2EEvents)] = rssMB("VmRSS")
	r.LiveHeapMB[fmt.Sprintf("%d (end)", r.E2EEvents)] = liveHeapMB()
	return nil
}

// benchAlerts publishes the feed at a steady alertRate with a probe sale of a
// SKU sold past its real stock among every probeEvery events, and measures
// from each probe's publish to its alert change on stock.alerts.>.
func benchAlerts(ctx context.Context, bc benchConfig, g *generator, pub *transport.Publisher, proj *consumers.Projector, nc *nats.Conn, r *modeResult) error {
	arrivals, err := watchProbeAlerts(nc)
	if err != nil {
		return err
	}
	defer arrivals.stop()
	if _, err := pub.Publish(ctx, probeSetup()); err != nil {
		return err
	}
	rate := min(alertRate, int(r.RawPublishEPS/2))
	r.AlertTargetEPS = float64(rate)
	run, err := publishProbes(ctx, g, pub, rate, bc.sz.AlertSeconds)
	if err != nil {
		return err
	}
	r.AlertRateEPS = run.eps
	wctx, cancel := context.WithTimeout(ctx, catchUpMax)
	defer cancel()
	if err := proj.WaitApplied(wctx, run.lastSeq); err != nil {
		return err
	}
	lat := arrivals.await(run.published)
	setAlertLatencies(bc, r, lat, len(run.published))
	return nil
}

// probeArrivals records when the probe SKU's oversold alert changes arrive,
// by the stream sequence of the event that changed the alert.
type probeArrivals struct {
	sub     *nats.Subscription
	mu      sync.Mutex
	arrived map[uint64]time.Time // first arrival only
}

func watchProbeAlerts(nc *nats.Conn) (*probeArrivals, error) {
	p := &probeArrivals{arrived: map[uint64]time.Time{}}
	sub, err := nc.Subscribe(transport.AlertSubject(probeShop, string(projections.Oversold)), func(m *nats.Msg) {
		now := time.Now()
		var a projections.Alert
		if json.Unmarshal(m.Data, &a) != nil {
			return
		}
		p.mu.Lock()
		if _, ok := p.arrived[a.UpdatedSeq]; !ok {
			p.arrived[a.UpdatedSeq] = now
		}
		p.mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	p.sub = sub
	return p, nil
}

func (p *probeArrivals) stop() { _ = p.sub.Unsubscribe() }

// await waits, at most alertArrivalMax, until the alert of every probe in
// published (publish time by stream sequence) has arrived, and returns the
// milliseconds from publish to arrival of those that did.
func (p *probeArrivals) await(published map[uint64]time.Time) []float64 {
	// Alerts are published after the commit: wait (bounded) for the last.
	deadline := time.Now().Add(alertArrivalMax)
	var lat []float64
	for {
		p.mu.Lock()
		lat = lat[:0]
		for seq, at := range published {
			if got, ok := p.arrived[seq]; ok {
				lat = append(lat, float64(got.Sub(at).Microseconds())/1000)
			}
		}
		p.mu.Unlock()
		if len(lat) == len(published) || time.Now().After(deadline) {
			return lat
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// probeSetup is the probe SKU's setup. The probe SKU: listed with plenty,
// counted empty: every sale is past real stock and changes its oversold
// alert.
func probeSetup() []ledger.Event {
	listing := ledger.Event{Type: ledger.Listing, Shop: probeShop, SKU: probeSKU, Title: "probe", PriceFen: 1000,
		Stock: ledger.Int64(1_000_000), SalesForm: ledger.Spot, ShipWithinHours: 72}
	recount := ledger.Event{Type: ledger.Recount, Shop: probeShop, SKU: probeSKU, Counted: ledger.Int64(0)}
	return []ledger.Event{listing, recount}
}

// probeRun is what publishProbes published: the publish time of each probe
// after alertWarmup by its stream sequence, the events per second, and the
// last stream sequence.
type probeRun struct {
	published map[uint64]time.Time
	eps       float64
	lastSeq   uint64
}

// publishProbes publishes g's feed at rate events per second for seconds,
// a probe sale among every probeEvery events.
func publishProbes(ctx context.Context, g *generator, pub *transport.Publisher, rate int, seconds float64) (probeRun, error) {
	run := probeRun{published: map[uint64]time.Time{}}
	probes := 0
	perTick := max(probeEvery, rate*int(tick/time.Millisecond)/1000)
	t := time.NewTicker(tick)
	defer t.Stop()
	begin := time.Now()
	count := 0
	buf := make([]ledger.Event, 0, perTick+8)
	for time.Since(begin).Seconds() < seconds {
		select {
		case <-ctx.Done():
			return run, ctx.Err()
		case <-t.C:
		}
		buf, probes = probeBatch(buf[:0], g, count, perTick, probes)
		at := time.Now()
		acks, err := pub.Publish(ctx, buf)
		if err != nil {
			return run, err
		}
		for i, e := range buf {
			if e.Shop == probeShop && at.Sub(begin) >= alertWarmup {
				run.published[acks[i].Seq] = at
			}
			run.lastSeq = max(run.lastSeq, acks[i].Seq)
		}
		count += len(buf)
	}
	run.eps = float64(count) / time.Since(begin).Seconds()
	return run, nil
}

// probeBatch appends a tick's perTick events to buf: g's, with a probe sale
// at every probeEvery-th event of the phase (count were published before).
// probes is the number of probe sales made before; it returns buf and the
// new number.
func probeBatch(buf []ledger.Event, g *generator, count, perTick, probes int) ([]ledger.Event, int) {
	for len(buf) < perTick {
		if (count+len(buf))%probeEvery == 0 {
			probes++
			buf = append(buf, ledger.Event{Type: ledger.Sale, Shop: probeShop, SKU: probeSKU,
				OrderID: fmt.Sprintf("probe-%d", probes), Qty: ledger.Int64(1), UnitPriceFen: 1000})
			continue
		}
		buf = g.Next(buf)
	}
	return buf, probes
}

// setAlertLatencies sets r's alert figures from lat, the latencies of the
// probes whose alert arrived, of published probes.
func setAlertLatencies(bc benchConfig, r *modeResult, lat []float64, published int) {
	if len(lat) == 0 {
		// Reported, not fatal: the alert publisher is behind the projector.
		bc.logf(r.Mode, "alerts: none of %d probe alerts arrived within %s of the projector catching up", published, alertArrivalMax)
		r.AlertP50MS, r.AlertP99MS = -1, -1
		return
	}
	slices.Sort(lat)
	r.AlertSamples = len(lat)
	r.AlertP50MS = lat[len(lat)/2]
	r.AlertP99MS = lat[min(len(lat)-1, len(lat)*99/100)]
	if len(lat) < published {
		bc.logf(r.Mode, "alerts: %d of %d probes had no alert within %s of catching up", published-len(lat), published, alertArrivalMax)
	}
}

// benchRebuild rebuilds the read model from the whole event stream into a
// fresh schema (dropped with the bench's, see benchSchema) with a new
// projector, until it has applied the last event.
func benchRebuild(ctx context.Context, bc benchConfig, js jetstream.JetStream, nc *nats.Conn, schema string, r *modeResult) error {
	st, err := js.Stream(ctx, transport.EventStream)
	if err != nil {
		return err
	}
	last := st.CachedInfo().State.LastSeq
	store, err := projections.OpenPostgres(ctx, bc.databaseURL, projections.PostgresOptions{Schema: schema + "_rebuild"})
	if err != nil {
		return err
	}
	defer store.Close()
	proj := consumers.NewProjector(nc, js, store, consumers.Options{Name: "rebuild", Log: slog.New(slog.DiscardHandler)})
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	begin := time.Now()
	go func() { done <- proj.Run(pctx) }()
	wctx, cancel := context.WithTimeout(ctx, catchUpMax)
	err = proj.WaitApplied(wctx, last)
	elapsed := time.Since(begin)
	cancel()
	stop()
	if perr := <-done; perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return err
	}
	r.RebuildEvents = last
	r.RebuildEPS = float64(last) / elapsed.Seconds()
	return nil
}
