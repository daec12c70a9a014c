package main

import (
	"testing"

	"stockledger/projections/pgtest"
)

// TestBenchModeSmall runs every phase of one bench mode at tiny sizes against
// the embedded NATS server and the test Postgres, and checks that each phase
// did its work: the figures themselves are for the bench command to print.
func TestBenchModeSmall(t *testing.T) {
	url, _ := pgtest.Open(t) // for the URL and the skip-or-fail rule; the bench makes its own schema
	bc := benchConfig{gen: flashSaleGenConfig(), databaseURL: url, child: "interval"}
	bc.gen.Shops, bc.gen.SKUsPerShop = 2, 30
	// Re-sends within the phases (and within the stream's duplicate
	// window): the stream keeps them out, and the raw read-back and the
	// e2e count must allow for it.
	bc.gen.ResendShare, bc.gen.ResendAfter = 0.05, 500
	bc.sz = sizes{RawEvents: 2_000, RawSyncSeconds: 0.2, E2EEvents: 3_000, HotrowSeconds: 0.3, HotrowClients: 4, AlertSeconds: 1.5, SyncSteps: 3_000}
	r, err := runMode(t.Context(), bc)
	if err != nil {
		t.Fatalf("runMode: %v", err)
	}
	switch {
	case r.RawPublishEPS <= 0 || r.RawReadEPS <= 0 || r.RawSyncPublishEPS <= 0:
		t.Errorf("raw figures missing: %+v", r)
	case r.E2EDuplicates == 0:
		t.Errorf("e2e: no re-send was kept out by the stream's duplicate window: %+v", r)
	case r.E2EEvents+r.E2EDuplicates < uint64(bc.sz.E2EEvents):
		t.Errorf("e2e applied %d events and kept out %d re-sends, want at least %d in all", r.E2EEvents, r.E2EDuplicates, bc.sz.E2EEvents)
	case r.HotrowOps <= 0:
		t.Errorf("hot row did no order: %+v", r)
	case r.AlertSamples == 0 || r.AlertP99MS < r.AlertP50MS:
		t.Errorf("alert latency: %d samples, p50 %.1f ms, p99 %.1f ms", r.AlertSamples, r.AlertP50MS, r.AlertP99MS)
	case r.RebuildEvents <= r.E2EEvents:
		t.Errorf("rebuild applied %d events, want the whole stream (more than the %d of the e2e phase)", r.RebuildEvents, r.E2EEvents)
	case r.E2EVsRaw <= 0 || r.RebuildVsRead <= 0 || r.E2EVsHotrow <= 0:
		t.Errorf("ratios missing: %+v", r)
	// How many instructions reach the platform within the run depends on
	// the machine's pace: platform_test.go checks them, in lockstep.
	case r.Sync == nil || len(r.Sync.Runs) != 1+len(syncPlatforms) || r.Sync.Runs[string(incrementOnly)].Counts == nil ||
		r.Sync.Runs[syncOff].Events < bc.sz.SyncSteps || r.Sync.Runs[syncOff].Probes == 0:
		t.Errorf("sync phase: %+v", r.Sync)
	}
}
