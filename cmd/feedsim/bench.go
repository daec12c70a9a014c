package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"stockledger/ledger/transport"
)

// Bench bounds and fixed settings.
const (
	// defaultDatabaseURL is the local Postgres of the README.
	defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	// catchUpMax bounds the wait for the projector to catch up.
	catchUpMax = 10 * time.Minute
	// hotrowClientsMax bounds -hotrow-clients (Postgres' max_connections
	// is 100 by default and other users share it).
	hotrowClientsMax = 90
	// childStopWait bounds a mode's cleanup after the bench is interrupted.
	childStopWait = time.Minute
)

// sizes are the amounts of work of one mode, stated in the output.
type sizes struct {
	RawEvents      int     `json:"raw_events"`
	RawSyncSeconds float64 `json:"raw_sync_seconds"`
	E2EEvents      int     `json:"e2e_events"`
	HotrowSeconds  float64 `json:"hotrow_seconds"`
	HotrowClients  int     `json:"hotrow_clients"`
	AlertSeconds   float64 `json:"alert_seconds"`
	// SyncSteps is the feed steps (about an event each) of each run of
	// the sync phase: a count, not a time, so that runs of one seed
	// publish the same feed however fast the machine goes.
	SyncSteps int `json:"sync_steps"`
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
	platform    syncSettings
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
	fs.DurationVar(&bc.dupWindow, "dup-window", 0, "diagnostic: the event stream's duplicate window instead of the ledger's default "+transport.DefaultEventDuplicateWindow.String()+" (its message ids are held in memory)")
	fs.IntVar(&bc.sz.SyncSteps, "sync-steps", 0, "feed steps of each run of the sync phase (0: by -quick)")
	fs.DurationVar(&bc.platform.Latency, "sync-latency", 0, "sync phase: how long the simulated platform takes to apply an instruction")
	fs.Float64Var(&bc.platform.LateRate, "sync-late", 0, "sync phase: share of instructions the platform applies -sync-late-by later")
	fs.DurationVar(&bc.platform.LateBy, "sync-late-by", 100*time.Millisecond, "sync phase: how much later a late instruction is applied")
	fs.Float64Var(&bc.platform.RefuseRate, "sync-refuse", 0, "sync phase: share of instructions the platform refuses")
	if err := fs.Parse(args); err != nil {
		return bc, err
	}
	if err := (platformConfig{Kind: incrementOnly, Latency: bc.platform.Latency, LateBy: bc.platform.LateBy,
		LateRate: bc.platform.LateRate, RefuseRate: bc.platform.RefuseRate}).check(); err != nil {
		return bc, fmt.Errorf("-sync-latency, -sync-late, -sync-late-by, -sync-refuse: %w", err)
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
	def(&sz.SyncSteps, 15_000, 15_000, 100_000, 100_000)
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
