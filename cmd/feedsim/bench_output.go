package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
)

// modeResult is what one durability mode measured.
type modeResult struct {
	Mode  string `json:"mode"`
	Sizes sizes  `json:"sizes"`

	RawPublishEPS     float64 `json:"raw_publish_eps"`
	RawReadEPS        float64 `json:"raw_read_eps"`
	RawSyncPublishEPS float64 `json:"raw_sync_publish_eps"`
	E2EEPS            float64 `json:"e2e_eps"`
	E2EEvents         uint64  `json:"e2e_events_applied"`
	// E2EDuplicates counts the e2e phase's re-sends that the stream kept
	// out (acknowledged as duplicates within its duplicate window).
	E2EDuplicates uint64  `json:"e2e_duplicates"`
	HotrowOps     float64 `json:"hotrow_ops"`
	AlertP50MS    float64 `json:"alert_p50_ms"`
	AlertP99MS    float64 `json:"alert_p99_ms"`
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

	// Sync is the sync phase's: units sold past real stock with the
	// platform adapter off and on, stop-selling latency, money at risk.
	Sync *syncResult `json:"sync,omitempty"`
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

type benchReport struct {
	Machine map[string]string      `json:"machine"`
	Command string                 `json:"command"`
	Modes   map[string]*modeResult `json:"modes"`
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
	syncRows(row)
	tw.Flush()
	for _, m := range modes {
		r := rep.Modes[m]
		fmt.Fprintf(w, "%s sizes: raw %d events, raw sync %.0fs, e2e %d events (%d applied incl. setup, %d re-sends kept out by the duplicate window), hot row %.0fs × %d clients, alerts %.0fs at %.0f ev/s, rebuild %d events\n",
			m, r.Sizes.RawEvents, r.Sizes.RawSyncSeconds, r.Sizes.E2EEvents, r.E2EEvents, r.E2EDuplicates, r.Sizes.HotrowSeconds, r.Sizes.HotrowClients, r.Sizes.AlertSeconds, r.AlertTargetEPS, r.RebuildEvents)
		if s := r.Sync; s != nil {
			fmt.Fprintf(w, "%s sync: %d steps per run (adapter off, increment-only, full-set) at %.0f ev/s; platform latency %.1f ms, late %.0f%% by %.0f ms, refused %.0f%%\n",
				m, s.Steps, s.TargetEPS, s.LatencyMS, 100*s.LateRate, s.LateByMS, 100*s.RefuseRate)
		}
		if len(r.RSSMB) > 0 {
			fmt.Fprintf(w, "%s rss_mb_at_events: %v\n", m, r.RSSMB)
			fmt.Fprintf(w, "%s live_heap_mb_at_events: %v\n", m, r.LiveHeapMB)
			fmt.Fprintf(w, "%s orders_held_at_events: %v\n", m, r.OrdersHeld)
		}
	}
}

// syncRows adds the sync phase's rows to the table (-1 where a mode has
// none).
func syncRows(row func(name, format string, get func(*modeResult) float64)) {
	sync := func(get func(*syncResult) float64) func(*modeResult) float64 {
		return func(r *modeResult) float64 {
			if r.Sync == nil || len(r.Sync.Runs) == 0 {
				return -1
			}
			return get(r.Sync)
		}
	}
	row("sync_eps", "%.0f", sync(func(s *syncResult) float64 { return s.Runs[string(incrementOnly)].RateEPS }))
	for _, name := range []string{syncOff, string(incrementOnly), string(fullSet)} {
		row("phantom_units_sold_"+name, "%.0f", sync(func(s *syncResult) float64 { return float64(s.PhantomUnitsSold[name]) }))
	}
	for _, name := range []string{syncOff, string(incrementOnly), string(fullSet)} {
		row("probe_phantom_units_"+name, "%.0f", sync(func(s *syncResult) float64 { return float64(s.Runs[name].ProbePhantomUnitsSold) }))
	}
	for _, k := range syncPlatforms {
		row("phantom_reduced_pct_"+string(k), "%.1f", sync(func(s *syncResult) float64 { return s.PhantomReducedPct[string(k)] }))
	}
	row("stop_selling_p50_ms", "%.1f", sync(func(s *syncResult) float64 { return s.StopSellingP50MS }))
	row("stop_selling_p99_ms", "%.1f", sync(func(s *syncResult) float64 { return s.StopSellingP99MS }))
	row("instruction_p50_ms", "%.1f", sync(func(s *syncResult) float64 { return s.InstructionP50MS }))
	row("instruction_p99_ms", "%.1f", sync(func(s *syncResult) float64 { return s.InstructionP99MS }))
	row("committed_p50_ms", "%.1f", sync(func(s *syncResult) float64 { return s.CommittedP50MS }))
	row("committed_p99_ms", "%.1f", sync(func(s *syncResult) float64 { return s.CommittedP99MS }))
	row("stop_selling_p99_ms_full_set", "%.1f", sync(func(s *syncResult) float64 { return s.Runs[string(fullSet)].StopSellingP99MS }))
	for _, k := range syncPlatforms {
		row("over_sellable_p99_units_"+string(k), "%.0f", sync(func(s *syncResult) float64 { return float64(s.Runs[string(k)].Counts.OverP99) }))
	}
	for _, name := range []string{syncOff, string(incrementOnly), string(fullSet)} {
		row("money_at_risk_fen_"+name, "%.0f", sync(func(s *syncResult) float64 { return float64(s.MoneyAtRiskFen[name]) }))
	}
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
