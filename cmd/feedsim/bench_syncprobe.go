package main

import (
	"fmt"

	"stockledger/ledger"
)

// Stop-selling probes of the sync phase. The feed's own run-outs are too
// few in a run of seconds to time the loop (a handful, and most end when
// the platform sells out first), so, as the alert phase does, the sync
// phase mixes probes into the feed: every syncProbeCycle events a probe
// SKU is listed with syncProbeStock units, a little later a recount finds
// none (the event that runs its real stock out), and from then on one
// event in syncProbeEvery is a sale of it for as long as the platform shows
// stock of it. The probes' units sold past real stock are counted apart
// from the feed's, and their shop is left out of the money at risk.
const (
	syncProbeShop  = "shop-sync-probe"
	syncProbeCycle = 500
	// syncProbeRecountAt is the event of a cycle that recounts its probe.
	syncProbeRecountAt = 50
	syncProbeEvery     = 10
	syncProbeStock     = 1_000
	syncProbePriceFen  = 1_000
)

// syncProbes is the state of the probes of one run. Not safe for
// concurrent use.
type syncProbes struct {
	cur       *simSKU // the probe being sold, nil before the first
	recounted bool    // cur's recount was made
	n         int     // probes listed
	count     int     // events of the run so far (the feed's and the probes')
	// listAt, recountAt and saleAt are the counts at which the next
	// listing, recount and sale are due.
	listAt, recountAt, saleAt int
	orders                    int
	phantom                   int64 // probe units sold past real stock
}

// next appends the run's next event to buf: a probe's listing, recount or
// sale when one is due, else the feed's next step (g's steps are the same
// whatever the probes do). onNew sees each probe listed.
func (pr *syncProbes) next(buf []ledger.Event, g *generator, onNew func(*simSKU)) (out []ledger.Event) {
	n := len(buf)
	defer func() { pr.count += len(out) - n }()
	switch s := pr.cur; {
	case pr.count >= pr.listAt:
		pr.n++
		s = &simSKU{shop: syncProbeShop, sku: fmt.Sprintf("probe-%05d", pr.n), priceFen: syncProbePriceFen, shipHours: 72,
			listed: syncProbeStock, onHand: syncProbeStock}
		pr.cur, pr.recounted = s, false
		pr.listAt, pr.recountAt = pr.count+syncProbeCycle, pr.count+syncProbeRecountAt
		onNew(s)
		e := pr.event(g, s, ledger.Listing)
		e.Title, e.PriceFen, e.Stock, e.SalesForm, e.ShipWithinHours = "probe", s.priceFen, ledger.Int64(s.listed), ledger.Spot, s.shipHours
		return append(buf, e)
	case s != nil && !pr.recounted && pr.count >= pr.recountAt:
		pr.recounted, pr.saleAt = true, pr.count+syncProbeEvery
		s.onHand = 0
		e := pr.event(g, s, ledger.Recount)
		e.Counted, e.CountedBy = ledger.Int64(0), "warehouse"
		g.checkRunOut(s)
		return append(buf, e)
	case s != nil && pr.recounted && pr.count >= pr.saleAt && s.listed > 0:
		pr.saleAt = pr.count + syncProbeEvery
		pr.orders++
		pr.phantom += max(0, 1-max(0, s.realLimit()))
		s.listed--
		s.committed++
		e := pr.event(g, s, ledger.Sale)
		e.OrderID, e.Qty, e.UnitPriceFen = fmt.Sprintf("sync-probe-%d", pr.orders), ledger.Int64(1), s.priceFen
		return append(buf, e)
	}
	return g.Next(buf)
}

// event is a probe event at the feed's clock (settings hold their slot by
// `at`, and the platform's stock_sets carry the feed's clock); the
// publisher gives it an id.
func (pr *syncProbes) event(g *generator, s *simSKU, t ledger.Type) ledger.Event {
	return ledger.Event{Type: t, Shop: s.shop, SKU: s.sku, At: g.clock}
}
