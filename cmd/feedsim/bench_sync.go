package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"stockledger/consumers"
	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// Sync phase settings.
const (
	// syncRate is the steady rate of the sync phase (the target's).
	syncRate = 5_000
	// syncOff names the run without an adapter.
	syncOff = "off"
	// syncRecountEvery and syncShrinkMax: see syncGenConfig.
	syncRecountEvery = 500
	syncShrinkMax    = 200
)

// syncGenConfig is the sync phase's feed: the flash sale, with the
// warehouse finding stock gone (damaged, sold through another channel) that
// the platform does not know of: a recount every syncRecountEvery steps,
// of a SKU picked by popularity (the dropped link's most of the time),
// finds up to syncShrinkMax units fewer than the book. The flash sale's own
// book rarely lets the platform's figure run past real stock (with seed 1:
// no unit in 15,000 steps, 1,520 in 100,000, nearly all of one presale
// SKU whose suppliers fell short), too rarely to compare runs of a few
// seconds.
func syncGenConfig() genConfig {
	c := flashSaleGenConfig()
	c.RecountEvery, c.ShrinkMax = syncRecountEvery, syncShrinkMax
	return c
}

// syncPlatforms are the adapter-on runs of the sync phase, each against the
// adapter-off run of the same seed.
var syncPlatforms = []platformKind{incrementOnly, fullSet}

// syncRunConfig is one run of the sync phase: steps of the feed at rate
// events per second against a fresh ledger, with the platform simulator
// (nil: no adapter, the platform sells against its own figure).
type syncRunConfig struct {
	gen         genConfig
	mode        string // durability: interval or always
	rate        int
	steps       int
	platform    *platformConfig
	databaseURL string
	dir         string // the run's NATS store lives under it
	// lockstep (tests): after each tick the feed waits until the ledger
	// has folded it, its instructions have reached the platform and the
	// platform's stock_sets are folded in turn, so that the loop is as
	// fast as the feed and a run repeats exactly (refusals aside).
	lockstep bool
}

// syncRunResult is what one run of the sync phase measured.
type syncRunResult struct {
	Platform string  `json:"platform"`
	RateEPS  float64 `json:"rate_eps"`
	Events   int     `json:"events"`
	// PhantomUnitsSold counts units of the feed's SKUs the platform sold
	// past real stock; ProbePhantomUnitsSold those of the stop-selling
	// probes (bench_syncprobe.go), Probes how many there were.
	PhantomUnitsSold      int64 `json:"phantom_units_sold"`
	ProbePhantomUnitsSold int64 `json:"probe_phantom_units_sold"`
	Probes                int   `json:"probes"`
	// RunOuts counts the times a SKU's real stock ran out while the
	// platform showed some (the probes' included); Stops those the adapter ended (listed taken to
	// sellable) before the platform sold out or the merchant restocked.
	RunOuts int `json:"run_outs"`
	Stops   int `json:"stops"`
	// StopSelling*MS are from the publish of the event that ran a SKU's
	// real stock out to the publish of the stock_set that took listed to
	// sellable; -1 without stops.
	StopSellingP50MS float64 `json:"stop_selling_p50_ms"`
	StopSellingP99MS float64 `json:"stop_selling_p99_ms"`
	StopSellingMaxMS float64 `json:"stop_selling_max_ms"`
	// Instruction*MS are the ledger's share: from the same publish to the
	// arrival, on a core subscription of stock.sync.>, of the SKU's first
	// instruction that reflects the run-out; -1 without any.
	InstructionP50MS float64 `json:"instruction_p50_ms"`
	InstructionP99MS float64 `json:"instruction_p99_ms"`
	// Committed*MS split the ledger's share: from the same publish to the
	// end of the commit of the batch holding the run-out's event (the
	// projector's Committed hook); the rest, to the instruction's arrival,
	// is the sync outbox's (read back, publish, ack). -1 without any.
	CommittedP50MS float64 `json:"committed_p50_ms"`
	CommittedP99MS float64 `json:"committed_p99_ms"`
	// toldFrom holds each instructed run-out: its publish time and the
	// sequence of its event.
	toldFrom []runOut
	// MoneyAtRiskFen is the shops' exposure_fen when the ledger has folded
	// the run: lines that cannot ship, late ones, units still offered past
	// sellable.
	MoneyAtRiskFen int64           `json:"money_at_risk_fen"`
	Counts         *platformCounts `json:"instructions,omitempty"`
}

// runSync runs one run of the sync phase on a NATS server, schema and
// projector of its own: the runs of one seed publish the same event ids,
// which a shared stream would keep out as duplicates.
func runSync(ctx context.Context, rc syncRunConfig) (*syncRunResult, error) {
	ns, err := startNATS(rc.dir, rc.mode)
	if err != nil {
		return nil, err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	var env modeEnv
	if env.feedNC, err = nats.Connect(ns.ClientURL(), nats.Name("feedsim platform")); err != nil {
		return nil, err
	}
	defer env.feedNC.Close()
	if env.svcNC, err = nats.Connect("", nats.InProcessServer(ns), nats.Name("ledgerd")); err != nil {
		return nil, err
	}
	defer env.svcNC.Close()
	if env.js, err = ensureBenchStreams(ctx, env.svcNC, 0); err != nil {
		return nil, err
	}
	schema, drop, err := benchSchema(ctx, rc.databaseURL)
	if err != nil {
		return nil, err
	}
	defer drop()
	env.schema = schema
	store, err := projections.OpenPostgres(ctx, rc.databaseURL, projections.PostgresOptions{Schema: schema})
	if err != nil {
		return nil, err
	}
	defer store.Close()
	commits := &commitTimes{}
	proj, stopProj, projDone := startProjector(ctx, env, store, consumers.Hooks{Committed: commits.committed})
	r, err := feedSync(ctx, rc, env, proj.WaitApplied, store)
	if err == nil {
		r.CommittedP50MS, r.CommittedP99MS = commits.split(r.toldFrom)
	}
	stopProj()
	if perr := <-projDone; err == nil && perr != nil {
		err = fmt.Errorf("projector: %w", perr)
	}
	return r, err
}

// syncFeed is the state of one run's feed loop: the feed, the platform
// (nil with the adapter off) and the stop-selling clock.
type syncFeed struct {
	rc      syncRunConfig
	env     modeEnv
	store   *projections.PostgresStore
	wait    func(context.Context, uint64) error // the projector's WaitApplied
	g       *generator
	pub     *transport.Publisher
	plat    *platformSim
	probes  syncProbes
	clock   stopClock
	lastSeq uint64
	events  int
}

// feedSync publishes the run's setup, waits until the ledger applied it,
// then the feed at a steady rate with the platform applying instructions,
// and measures once the ledger has folded everything.
func feedSync(ctx context.Context, rc syncRunConfig, env modeEnv, waitApplied func(context.Context, uint64) error, store *projections.PostgresStore) (*syncRunResult, error) {
	nc := env.feedNC
	g, err := newGenerator(rc.gen)
	if err != nil {
		return nil, err
	}
	pub, err := transport.NewPublisher(nc, transport.PublisherOptions{AtomicBatches: rc.mode == "always"})
	if err != nil {
		return nil, err
	}
	f := &syncFeed{rc: rc, env: env, store: store, wait: waitApplied, g: g, pub: pub, clock: stopClock{marked: map[*simSKU]*runOut{}}}
	g.ranOut = f.clock.ranOut
	r := &syncRunResult{Platform: syncOff}
	if rc.platform != nil {
		r.Platform = string(rc.platform.Kind)
		if f.plat, err = newPlatformSim(*rc.platform, g); err != nil {
			return nil, err
		}
		if err := f.plat.follow(nc); err != nil {
			return nil, err
		}
		defer f.plat.stop()
	}
	if err := f.publish(ctx, g.Setup(), time.Now()); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, catchUpMax)
	defer cancel()
	if err := waitApplied(wctx, f.lastSeq); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	if rc.lockstep {
		if err := f.settle(ctx); err != nil {
			return nil, fmt.Errorf("setup: %w", err)
		}
	}
	setup := f.events
	begin := time.Now()
	if err := f.run(ctx, rc.rate, rc.steps); err != nil {
		return nil, err
	}
	r.Events = f.events - setup
	r.RateEPS = float64(r.Events) / time.Since(begin).Seconds()
	if err := waitApplied(wctx, f.lastSeq); err != nil {
		return nil, err
	}
	f.result(r)
	r.MoneyAtRiskFen, err = moneyAtRisk(ctx, store, g)
	return r, err
}

// run publishes steps of the feed at rate events per second, in tick
// batches, and the platform's stock_sets as soon as they are due.
func (f *syncFeed) run(ctx context.Context, rate, steps int) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var wake <-chan struct{}
	if f.plat != nil {
		wake = f.plat.wake
	}
	due := 0.0
	buf := make([]ledger.Event, 0, ledger.MaxBatch)
	for f.g.n < steps {
		ticked := false
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-timer.C:
		case <-t.C:
			ticked = true
		}
		if err := f.platformDue(ctx, timer); err != nil {
			return err
		}
		if !ticked {
			continue
		}
		// As publishPaced: what a tick cannot carry is not owed later.
		due = min(due+float64(rate)*tick.Seconds(), float64(ledger.MaxBatch))
		buf = buf[:0]
		for due >= 1 && len(buf) <= ledger.MaxBatch-stepEventsMax && f.g.n < steps {
			n := len(buf)
			buf = f.probes.next(buf, f.g, f.newProbe)
			due -= float64(max(1, len(buf)-n))
		}
		if err := f.publish(ctx, buf, time.Now()); err != nil {
			return err
		}
		if f.rc.lockstep {
			if err := f.settle(ctx); err != nil {
				return err
			}
		}
		f.clock.sweep()
	}
	return nil
}

// settle (lockstep) waits until the ledger has folded what was published
// and the platform has received every instruction that called for, and
// has it apply them, until no stock_set is left to fold.
func (f *syncFeed) settle(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, catchUpMax)
	defer cancel()
	for {
		if err := f.wait(wctx, f.lastSeq); err != nil {
			return err
		}
		if f.plat == nil {
			return nil
		}
		if err := f.delivered(wctx); err != nil {
			return err
		}
		f.plat.take(f.clock.instructed)
		now := time.Now()
		sets, touched := f.plat.applyDue(nil, now, nil)
		if len(sets) == 0 {
			return nil
		}
		if err := f.publish(ctx, sets, now); err != nil {
			return err
		}
		f.clock.stopped(touched, now)
	}
}

// delivered waits until the sync outbox is empty and the platform has
// received as many instructions as the stream holds.
func (f *syncFeed) delivered(ctx context.Context) error {
	for {
		pending, err := f.store.PendingSync(ctx, 1)
		if err != nil {
			return err
		}
		if len(pending) == 0 {
			st, err := f.env.js.Stream(ctx, transport.SyncStream)
			if err != nil {
				return err
			}
			if uint64(f.plat.arrived.Load()) >= st.CachedInfo().State.Msgs {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("instructions not delivered: %w", ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

// newProbe puts a probe SKU on the platform.
func (f *syncFeed) newProbe(s *simSKU) {
	if f.plat != nil {
		f.plat.skus[projections.SKUKey{Shop: s.shop, SKU: s.sku}] = s
	}
}

// platformDue has the platform apply what is due, publishes the stock_sets
// it confirms, and sets timer to the next instruction due.
func (f *syncFeed) platformDue(ctx context.Context, timer *time.Timer) error {
	if f.plat == nil {
		return nil
	}
	f.plat.take(f.clock.instructed)
	for {
		now := time.Now()
		sets, touched := f.plat.applyDue(nil, now, nil)
		if len(sets) == 0 {
			break
		}
		if err := f.publish(ctx, sets, now); err != nil {
			return err
		}
		f.clock.stopped(touched, now)
	}
	if at, ok := f.plat.next(); ok {
		timer.Reset(time.Until(at))
	}
	return nil
}

// publish publishes events (all of them, in ledger.MaxBatch calls) and
// notes when: the SKUs that ran out among them ran out at `at`.
func (f *syncFeed) publish(ctx context.Context, events []ledger.Event, at time.Time) error {
	for chunk := range slices.Chunk(events, ledger.MaxBatch) {
		acks, err := f.pub.Publish(ctx, chunk)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		for _, a := range acks {
			f.lastSeq = max(f.lastSeq, a.Seq)
		}
		if f.plat != nil {
			f.plat.published(chunk, acks)
		}
		f.clock.publishedAt(at, chunk, acks)
	}
	f.events += len(events)
	return nil
}

// result sets r's figures from the feed's book, the stop-selling clock and
// the platform's counts.
func (f *syncFeed) result(r *syncRunResult) {
	r.PhantomUnitsSold = f.g.phantomSold
	r.ProbePhantomUnitsSold, r.Probes = f.probes.phantom, f.probes.n
	r.RunOuts, r.Stops = f.clock.runOuts, len(f.clock.lat)
	r.StopSellingP50MS, r.StopSellingP99MS, r.StopSellingMaxMS = percentiles(f.clock.lat)
	r.InstructionP50MS, r.InstructionP99MS, _ = percentiles(f.clock.told)
	r.toldFrom = f.clock.toldFrom
	if f.plat != nil {
		c := f.plat.result()
		r.Counts = &c
	}
}

// moneyAtRisk sums the exposure_fen of g's shops in store.
func moneyAtRisk(ctx context.Context, store *projections.PostgresStore, g *generator) (int64, error) {
	shops := map[string]bool{}
	var fen int64
	for _, s := range g.skus {
		if shops[s.shop] {
			continue
		}
		shops[s.shop] = true
		h, err := store.ShopHealth(ctx, s.shop, time.Now())
		if err != nil {
			return 0, fmt.Errorf("health of %s: %w", s.shop, err)
		}
		fen += h.ExposureFen
	}
	return fen, nil
}

// syncRunDir makes the directory of one run under dir.
func syncRunDir(dir, name string) (string, error) {
	d := filepath.Join(dir, "sync-"+name)
	return d, os.MkdirAll(d, 0o755)
}

// syncSettings is the simulated platform the bench's adapter-on runs use
// (-sync-latency, -sync-late, -sync-late-by, -sync-refuse).
type syncSettings struct {
	Latency, LateBy      time.Duration
	LateRate, RefuseRate float64
}

// syncResult is the sync phase's figures: each run's, and the comparisons
// of the adapter-on runs with the adapter-off run of the same seed.
type syncResult struct {
	TargetEPS  float64 `json:"target_eps"`
	Steps      int     `json:"steps"`
	LatencyMS  float64 `json:"platform_latency_ms"`
	LateRate   float64 `json:"platform_late_rate"`
	LateByMS   float64 `json:"platform_late_by_ms"`
	RefuseRate float64 `json:"platform_refuse_rate"`
	// PhantomUnitsSold and MoneyAtRiskFen by run: off, increment, full_set.
	PhantomUnitsSold map[string]int64 `json:"phantom_units_sold"`
	MoneyAtRiskFen   map[string]int64 `json:"money_at_risk_fen"`
	// PhantomReducedPct by platform: how much fewer units were sold past
	// real stock than with the adapter off, in percent.
	PhantomReducedPct map[string]float64 `json:"phantom_units_reduced_pct"`
	// StopSellingP50MS and P99MS are the increment-only run's: its
	// correction is exact, so they time the loop (each run's are in Runs).
	StopSellingP50MS float64 `json:"stop_selling_p50_ms"`
	StopSellingP99MS float64 `json:"stop_selling_p99_ms"`
	// InstructionP50MS and P99MS are the ledger's share of them.
	InstructionP50MS float64 `json:"instruction_p50_ms"`
	InstructionP99MS float64 `json:"instruction_p99_ms"`
	// CommittedP50MS and P99MS are the part of it until the commit.
	CommittedP50MS float64                   `json:"committed_p50_ms"`
	CommittedP99MS float64                   `json:"committed_p99_ms"`
	Runs           map[string]*syncRunResult `json:"runs"`
}

// benchSync runs the sync phase (interval mode only): the feed of syncGenConfig (the bench's
// seed, shops and SKUs) at a steady syncRate
// (or half the raw async rate when that is lower) for the phase's steps,
// with the adapter off, then on against each platform kind, the same seed
// each time.
func benchSync(ctx context.Context, bc benchConfig, r *modeResult) error {
	if r.Mode != "interval" {
		// Sync on every write does not reach syncRate (half the raw rate
		// is its bound), and the phase compares the adapter on and off,
		// not the durability modes: it would only lengthen the bench.
		bc.logf(r.Mode, "sync: not run (interval mode only)")
		return nil
	}
	rate := syncRate
	if r.RawPublishEPS > 0 {
		rate = min(rate, int(r.RawPublishEPS/2))
	}
	dir, err := os.MkdirTemp("", "feedsim-sync-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ps := bc.platform
	res := &syncResult{TargetEPS: float64(rate), Steps: bc.sz.SyncSteps, LatencyMS: ms(ps.Latency), LateRate: ps.LateRate,
		LateByMS: ms(ps.LateBy), RefuseRate: ps.RefuseRate, Runs: map[string]*syncRunResult{}}
	names := []string{syncOff}
	for _, k := range syncPlatforms {
		names = append(names, string(k))
	}
	gen := syncGenConfig()
	gen.Seed, gen.Shops, gen.SKUsPerShop, gen.Start = bc.gen.Seed, bc.gen.Shops, bc.gen.SKUsPerShop, bc.gen.Start
	for _, name := range names {
		rc := syncRunConfig{gen: gen, mode: r.Mode, rate: rate, steps: bc.sz.SyncSteps, databaseURL: bc.databaseURL}
		if rc.dir, err = syncRunDir(dir, name); err != nil {
			return err
		}
		if name != syncOff {
			rc.platform = &platformConfig{Kind: platformKind(name), Latency: ps.Latency, LateBy: ps.LateBy,
				LateRate: ps.LateRate, RefuseRate: ps.RefuseRate, Seed: bc.gen.Seed}
		}
		run, err := runSync(ctx, rc)
		if err != nil {
			return fmt.Errorf("sync %s: %w", name, err)
		}
		res.Runs[name] = run
		bc.logf(r.Mode, "sync %s: %d units sold past real stock (probes %d), stop-selling p50 %.1f ms p99 %.1f ms (%d of %d run-outs; instruction p50 %.1f p99 %.1f ms, committed p50 %.1f p99 %.1f ms), money at risk %s, %.0f events/s",
			name, run.PhantomUnitsSold, run.ProbePhantomUnitsSold, run.StopSellingP50MS, run.StopSellingP99MS, run.Stops, run.RunOuts,
			run.InstructionP50MS, run.InstructionP99MS, run.CommittedP50MS, run.CommittedP99MS, projections.Yuan(run.MoneyAtRiskFen), run.RateEPS)
	}
	res.compare()
	r.Sync = res
	return nil
}

// compare sets the comparisons from the runs.
func (res *syncResult) compare() {
	res.PhantomUnitsSold, res.MoneyAtRiskFen, res.PhantomReducedPct = map[string]int64{}, map[string]int64{}, map[string]float64{}
	off := res.Runs[syncOff]
	for name, run := range res.Runs {
		res.PhantomUnitsSold[name], res.MoneyAtRiskFen[name] = run.PhantomUnitsSold, run.MoneyAtRiskFen
		if name != syncOff && off.PhantomUnitsSold > 0 {
			res.PhantomReducedPct[name] = 100 * float64(off.PhantomUnitsSold-run.PhantomUnitsSold) / float64(off.PhantomUnitsSold)
		}
	}
	inc := res.Runs[string(incrementOnly)]
	res.StopSellingP50MS, res.StopSellingP99MS = inc.StopSellingP50MS, inc.StopSellingP99MS
	res.InstructionP50MS, res.InstructionP99MS = inc.InstructionP50MS, inc.InstructionP99MS
	res.CommittedP50MS, res.CommittedP99MS = inc.CommittedP50MS, inc.CommittedP99MS
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
