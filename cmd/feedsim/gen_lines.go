package main

import (
	"fmt"
	"slices"
	"time"

	"stockledger/ledger"
)

// simLine is the feed's book of one order line, (shop, sku, order_id): what
// the platform sold and what has happened to its units since. The fold
// refuses shipments and cancels past its open units and returns past its
// shipped ones; the feed never sends them.
type simLine struct {
	sku   *simSKU
	order string
	qty   int64
	// shipped, cancelled and returned count the line's units.
	shipped, cancelled, returned int64
	soldAt                       time.Time
	// shipBy is the line's promise as the fold has it: the sale's ship_by,
	// else its `at` plus the listing's promise; moved by promise_changed.
	shipBy time.Time
	// planned is set when the line first comes up to ship, and with it
	// whether the merchant delays it (once) and ships it in packages.
	planned, delay, packaged bool
	// packages counts the line's shipments that named a waybill.
	packages int
}

// open is the line's open units: sold, neither shipped nor cancelled.
func (l *simLine) open() int64 { return l.qty - l.shipped - l.cancelled }

// pendingReturn is a shipped line whose buyer will send units back at due
// (event time).
type pendingReturn struct {
	line *simLine
	due  time.Time
}

// order sells one order: one line of s, or (CartShare) a cart of s and up
// to cartLinesMax−1 more SKUs of its shop. A SKU the platform shows no
// stock of cannot be bought: the merchant relists it instead, and the order
// goes on without it.
func (g *generator) order(out []ledger.Event, s *simSKU) []ledger.Event {
	cart := [cartLinesMax]*simSKU{s}
	n := 1
	if g.rng.Float64() < g.c.CartShare {
		for range 1 + g.rng.IntN(cartLinesMax-1) {
			// One line per SKU: a second pick of the same SKU is dropped.
			if t := g.pickIn(s.shopIndex); !slices.Contains(cart[:n], t) {
				cart[n] = t
				n++
			}
		}
	}
	douyin := n > 1 && g.rng.Float64() < g.c.ParentShare
	lines := cart[:0]
	for _, t := range cart[:n] {
		if t.listed <= 0 {
			out = g.relist(out, t)
			continue
		}
		lines = append(lines, t)
	}
	if len(lines) == 0 {
		return out
	}
	g.orders++
	order, parent := fmt.Sprintf("ks-%d-%d", g.c.Seed, g.orders), ""
	if douyin {
		// A Douyin parent order: its lines carry the parent's id too.
		order, parent = fmt.Sprintf("dy-%d-%d", g.c.Seed, g.orders), fmt.Sprintf("dyp-%d-%d", g.c.Seed, g.orders)
	}
	for _, t := range lines {
		out = g.sale(out, t, order, parent)
	}
	return out
}

// sale sells one line of s (which shows stock) under order.
func (g *generator) sale(out []ledger.Event, s *simSKU, order, parent string) []ledger.Event {
	qty := int64(1)
	if g.rng.Float64() < g.c.MultiUnitShare {
		qty = 2 + g.rng.Int64N(unitsPerLineMax-1)
	}
	qty = min(qty, s.listed) // the platform sells no more than it shows
	e := g.event(s, ledger.Sale)
	e.OrderID, e.ParentOrderID = order, parent
	e.Qty, e.UnitPriceFen, e.LiveID = ledger.Int64(qty), s.priceFen, "live-"+s.shop
	shipBy, _ := ledger.ShipDue(g.clock, s.form(), s.shipHours, s.shipDays) // the feed lists every SKU first
	if g.rng.Float64() < g.c.ShipByShare {
		// The platform's own promise, given to the hour (as Douyin's
		// exp_ship_time): never earlier than the listing's.
		shipBy = shipBy.Add(time.Hour - time.Nanosecond).Truncate(time.Hour)
		e.ShipBy = ledger.Time(shipBy)
	}
	g.phantomSold += max(0, qty-max(0, s.realLimit()))
	s.listed -= qty
	s.commit(qty)
	g.checkRunOut(s)
	g.open = append(g.open, &simLine{sku: s, order: order, qty: qty, soldAt: g.clock, shipBy: shipBy})
	return append(out, e)
}

// cancel has a buyer cancel one of the most recent open lines: part of its
// open units with a refund (PartialCancelShare, when it has more than one),
// else every open unit. The platform puts the units back on sale.
func (g *generator) cancel(out []ledger.Event) []ledger.Event {
	i := len(g.open) - 1 - g.rng.IntN(min(len(g.open), cancelRecentMax))
	l := g.open[i]
	e := g.event(l.sku, ledger.Cancel)
	e.OrderID = l.order
	n := l.open()
	if n > 1 && g.rng.Float64() < g.c.PartialCancelShare {
		n = 1 + g.rng.Int64N(n-1) // the line stays open
		e.Qty, e.RefundID = ledger.Int64(n), g.doc("rf")
	} else {
		g.open = slices.Delete(g.open, i, i+1)
	}
	l.cancelled += n
	l.sku.listed += n
	l.sku.commit(-n)
	if l.open() == 0 {
		g.closed(l)
	}
	return append(out, e)
}

// ship works on the oldest open line. When it first comes up, the line's
// plan is drawn: a delay filing (PromiseShare) moves its promise and sends
// it to the back of the queue; a line in packages (PackageShare) ships a
// part now and stays at the front; any other line ships whole.
func (g *generator) ship(out []ledger.Event) []ledger.Event {
	l := g.open[0]
	if !l.planned {
		l.planned = true
		l.delay = g.rng.Float64() < g.c.PromiseShare
		l.packaged = l.open() > 1 && g.rng.Float64() < g.c.PackageShare
	}
	if l.delay {
		l.delay = false
		g.open[0] = nil
		g.open = append(g.open[1:], l)
		e := g.event(l.sku, ledger.PromiseChanged)
		l.shipBy = l.shipBy.Add(time.Duration(24*(1+g.rng.IntN(2))) * time.Hour)
		e.OrderID, e.ShipBy = l.order, ledger.Time(l.shipBy)
		return append(out, e)
	}
	open := l.open()
	var qty int64 // 0: every open unit, no qty
	switch {
	case !l.packaged:
	case l.packages == 0 && open > 1:
		qty = 1 + g.rng.Int64N(open-1) // the first package leaves some for the next
	case g.rng.IntN(2) == 0:
		qty = 1 + g.rng.Int64N(open) // another package, perhaps the last
	}
	return g.shipLine(out, l, qty)
}

// shipAll ships every open unit of the oldest line: the feed holds
// openLinesMax lines.
func (g *generator) shipAll(out []ledger.Event) []ledger.Event {
	return g.shipLine(out, g.open[0], 0)
}

// shipLine ships qty units of l, the oldest open line, in a package with
// a waybill; qty 0 ships every open unit with no qty.
func (g *generator) shipLine(out []ledger.Event, l *simLine, qty int64) []ledger.Event {
	e := g.event(l.sku, ledger.Shipment)
	e.OrderID = l.order
	n := l.open()
	if qty > 0 {
		n = qty
		e.Qty, e.Waybill = ledger.Int64(qty), g.doc("wb")
		l.packages++
	}
	l.shipped += n
	s := l.sku
	s.commit(-n)
	if s.presale {
		s.presaleShipped += n // the units used up supplier capacity
	} else {
		s.onHand -= n
	}
	if l.open() == 0 {
		g.open[0] = nil
		g.open = g.open[1:]
		g.closed(l)
	}
	return append(out, e)
}

// closed sees a line lose its last open unit: a line with shipped units is
// returned later, ReturnShare of the time.
func (g *generator) closed(l *simLine) {
	if l.shipped == 0 || g.rng.Float64() >= g.c.ReturnShare {
		return
	}
	g.returns.push(pendingReturn{line: l, due: g.clock.Add(g.c.ReturnDelay)}) // full: no return
}

// returnDue makes the oldest pending return once it is due (one a step): a
// 7-day no-reason return of some of the line's shipped units, of which
// InspectFailShare of the time some fail inspection. The units that pass
// go back on hand; the platform figure changes only by stock_set.
func (g *generator) returnDue(out []ledger.Event) []ledger.Event {
	p, ok := g.returns.front()
	if !ok || p.due.After(g.clock) {
		return out
	}
	g.returns.pop()
	l := p.line
	qty := 1 + g.rng.Int64N(l.shipped-l.returned)
	e := g.event(l.sku, ledger.Return)
	e.OrderID, e.Qty, e.ReturnID = l.order, ledger.Int64(qty), g.doc("rt")
	restocked := qty // restocked left out: every unit passed
	if g.rng.Float64() < g.c.InspectFailShare {
		restocked = g.rng.Int64N(qty)
		e.Restocked = ledger.Int64(restocked)
	}
	l.returned += qty
	l.sku.onHand += restocked // a returned presale unit is physical stock now
	return append(out, e)
}
