package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"stockledger/consumers"
	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// Alert-latency phase bounds and settings.
const (
	// alertRate is the steady rate of the alert-latency phase (the target's),
	// and probeEvery puts one probe sale among that many events.
	alertRate  = 5_000
	probeEvery = 10
	// alertWarmup is left out of the latency figures.
	alertWarmup = time.Second
	// alertArrivalMax bounds the wait for the probes' alerts once the
	// projector has caught up.
	alertArrivalMax = 10 * time.Second
	// probeShop and probeSKU are the SKU the alert phase sells past stock.
	probeShop, probeSKU = "shop-probe", "probe-1"
)

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
	buf := make([]ledger.Event, 0, perTick+stepEventsMax)
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
