package main

import (
	"fmt"
	"testing"
	"time"

	"stockledger/projections/pgtest"
)

// TestPlatformFate checks that which instructions the platform refuses or
// applies late depends on the seed and the key alone, at about the rates.
func TestPlatformFate(t *testing.T) {
	a := platformConfig{Kind: incrementOnly, RefuseRate: 0.3, LateRate: 0.1, Seed: 1}
	b := a
	b.Seed = 2
	const n = 10_000
	var refused, late, differ int
	for i := range n {
		key := fmt.Sprintf("sync:shop-00:sku-%05d:%d", i%50, i)
		r1, l1 := a.fate(key)
		if r2, l2 := a.fate(key); r1 != r2 || l1 != l2 {
			t.Fatalf("%s: fate (%v, %v) then (%v, %v) with one seed", key, r1, l1, r2, l2)
		}
		if r3, l3 := b.fate(key); r1 != r3 || l1 != l3 {
			differ++
		}
		if r1 {
			refused++
		}
		if l1 {
			late++
		}
	}
	if refused < n*25/100 || refused > n*35/100 || late < n*7/100 || late > n*13/100 {
		t.Errorf("refused %d, late %d of %d; want about 30%% and 10%%", refused, late, n)
	}
	if differ == 0 {
		t.Error("seeds 1 and 2 gave every instruction the same fate")
	}
	none := platformConfig{Kind: fullSet, Seed: 1}
	for i := range 1000 {
		if r, l := none.fate(fmt.Sprint(i)); r || l {
			t.Fatalf("rates 0: instruction %d refused %v, late %v", i, r, l)
		}
	}
}

// syncTestConfig is a run of the sync phase small enough for a test: its
// feed on a small catalogue, so that the platform sells past real stock
// within a few thousand steps, in lockstep (the loop as fast as the feed,
// however loaded the machine: no figure depends on its speed).
func syncTestConfig(t *testing.T, p *platformConfig) syncRunConfig {
	url, _ := pgtest.Open(t) // for the URL and the skip-or-fail rule; the run makes its own schema
	g := syncGenConfig()
	g.Seed, g.Shops, g.SKUsPerShop, g.Start = 3, 2, 40, genT0
	g.DropEvery, g.DropLen = 2_000, 1_600
	return syncRunConfig{gen: g, mode: "interval", rate: 5_000, steps: 5_000, platform: p, databaseURL: url, dir: t.TempDir(), lockstep: true}
}

func runSyncT(t *testing.T, rc syncRunConfig) *syncRunResult {
	t.Helper()
	r, err := runSync(t.Context(), rc)
	if err != nil {
		t.Fatalf("runSync: %v", err)
	}
	t.Logf("%s: %d events, %d units sold past real stock (probes %d), %d of %d run-outs stopped (p50 %.1f ms, p99 %.1f ms; instruction p50 %.1f ms), money at risk %d fen, instructions %+v",
		r.Platform, r.Events, r.PhantomUnitsSold, r.ProbePhantomUnitsSold, r.Stops, r.RunOuts, r.StopSellingP50MS, r.StopSellingP99MS, r.InstructionP50MS, r.MoneyAtRiskFen, r.Counts)
	return r
}

// TestSyncAdapterCutsPhantomSales runs the same seed with the adapter off
// and on against a zero-latency platform of each kind: on, the platform
// follows the instructions and sells fewer units past real stock, the
// probes' too; and a run repeats itself (the increment-only platform's
// twice: which batches the projector cuts, and so which instructions it
// gives, varies; what the platform ends up selling does not).
func TestSyncAdapterCutsPhantomSales(t *testing.T) {
	off := runSyncT(t, syncTestConfig(t, nil))
	if off.PhantomUnitsSold == 0 || off.ProbePhantomUnitsSold == 0 || off.RunOuts == 0 || off.Stops != 0 || off.Counts != nil {
		t.Fatalf("adapter off: %+v; want units sold past real stock, run-outs, and no stops", off)
	}
	for _, k := range syncPlatforms {
		on := runSyncT(t, syncTestConfig(t, &platformConfig{Kind: k, Seed: 3}))
		c := on.Counts
		switch {
		case c == nil || c.Received == 0 || c.Applied == 0:
			t.Errorf("%s: instructions %+v; want some received and applied", k, c)
		case c.Refused != c.Insufficient || c.Late != 0 || c.Lost != 0 || c.Unknown != 0:
			t.Errorf("%s: instructions %+v; want none refused but for insufficient stock, late, lost or unknown", k, c)
		case on.PhantomUnitsSold >= off.PhantomUnitsSold || on.ProbePhantomUnitsSold >= off.ProbePhantomUnitsSold:
			t.Errorf("%s: %d units (probes %d) sold past real stock with the adapter, %d (%d) without", k,
				on.PhantomUnitsSold, on.ProbePhantomUnitsSold, off.PhantomUnitsSold, off.ProbePhantomUnitsSold)
		case on.Stops == 0 || on.InstructionP50MS < 0:
			t.Errorf("%s: no run-out of %d stopped by the adapter, or none instructed", k, on.RunOuts)
		}
		if k != incrementOnly {
			continue
		}
		again := runSyncT(t, syncTestConfig(t, &platformConfig{Kind: k, Seed: 3}))
		if again.PhantomUnitsSold != on.PhantomUnitsSold || again.ProbePhantomUnitsSold != on.ProbePhantomUnitsSold || again.MoneyAtRiskFen != on.MoneyAtRiskFen {
			t.Errorf("%s, same seed: %d units (probes %d) past real stock, %d fen at risk; then %d (%d), %d fen", k,
				on.PhantomUnitsSold, on.ProbePhantomUnitsSold, on.MoneyAtRiskFen, again.PhantomUnitsSold, again.ProbePhantomUnitsSold, again.MoneyAtRiskFen)
		}
	}
}

// TestSyncRefusedAndLate checks that a platform that refuses and delays
// instructions counts them, and that refusals are reported as stock_sets
// the ledger folds (the run ends with the ledger caught up).
func TestSyncRefusedAndLate(t *testing.T) {
	p := &platformConfig{Kind: incrementOnly, RefuseRate: 0.5, LateRate: 0.3, LateBy: 20 * time.Millisecond, Seed: 3}
	on := runSyncT(t, syncTestConfig(t, p))
	c := on.Counts
	if c == nil || c.Refused <= c.Insufficient || c.Applied == 0 || c.Late == 0 {
		t.Errorf("instructions %+v; want some refused by the draw, some applied, some late", c)
	}
}
