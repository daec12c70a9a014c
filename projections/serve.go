package projections

import (
	"time"
)

// lot is one supplier's confirmed presale capacity and when it delivers.
type lot struct {
	qty       int64
	deliverBy time.Time
}

// serving is what serving the open lines from stock (spot) and from the
// suppliers' lots (presale) finds: the lines that cannot be served, and the
// money each open line risks.
type serving struct {
	spot, presale servedForm
	// lateReady are the presale lines served by lots that deliver only
	// after the line's ship-by (not yet past it: those are ship_late's).
	lateReady lateReady
}

// servedForm sums the open lines of one sales form.
type servedForm struct {
	// unserved* are the lines the supply cannot serve: their count, open
	// units and unshipped compensation.
	unservedLines, unservedUnits, unservedFen int64
	// lateFen is the late compensation of the served lines that are late
	// (past their ship-by) or will be (ready after it).
	lateFen int64
	// lateServed counts the served lines past their ship-by.
	lateServed int64
}

// lateReady sums the presale lines that will be ready only after their
// ship-by.
type lateReady struct {
	lines, units, fen int64
	// worst is the longest wait past a ship-by; first names the first such
	// line (in serving order).
	worst time.Duration
	first string
}

// serve serves the open lines of each form in order of their ship-by (then
// stream sequence) from what there is: spot lines from on_hand, presale lines
// from the lots left after the presale units already shipped used up the
// earliest. A line whose open units exceed what is left is unserved, and a
// later, smaller line may still be served. The walk stops as soon as the rest
// is known without it (supply used up, or nothing later can be short or
// late), so that a SKU with many open lines costs about as many steps as it
// has late lines and units short, not lines.
func (s *SKU) serve() serving {
	var sv serving
	if s.spot.units > s.OnHand {
		sv.spot = s.serveSpot()
	} else {
		sv.spot.lateFen, sv.spot.lateServed = s.spot.lateFen, int64(s.spot.late) // every line served
	}
	sv.presale, sv.lateReady = s.servePresale()
	return sv
}

// remainder returns the figures of o's lines from index i on, from its
// totals less the walked part.
func remainder(o *openLines, i int, walkedUnits, walkedFen int64) (lines, units, fen int64) {
	return int64(len(o.lines) - i), o.units - walkedUnits, o.unshippedFen - walkedFen
}

func (s *SKU) serveSpot() servedForm {
	var f servedForm
	o := &s.spot
	left := max(0, s.OnHand)
	var walkedUnits, walkedFen int64
	for i, l := range o.lines {
		if left == 0 && i >= o.late {
			// Nothing left and nothing late further on: all unserved.
			n, u, fen := remainder(o, i, walkedUnits, walkedFen)
			f.unservedLines, f.unservedUnits, f.unservedFen = f.unservedLines+n, f.unservedUnits+u, f.unservedFen+fen
			break
		}
		u, fen := l.Open(), UnshippedCompensationFen(l.ValueFen())
		walkedUnits, walkedFen = walkedUnits+u, walkedFen+fen
		if u <= left {
			left -= u
			if l.Late {
				f.lateFen += LateCompensationFen(l.ValueFen())
				f.lateServed++
			}
			continue
		}
		f.unservedLines, f.unservedUnits, f.unservedFen = f.unservedLines+1, f.unservedUnits+u, f.unservedFen+fen
	}
	return f
}

// lotCursor draws units from lots in supply order.
type lotCursor struct {
	lots []lot
	i    int
	left int64 // units left in lots[i]
	// total is the units left in all lots.
	total int64
}

func newLotCursor(lots []lot, used int64) lotCursor {
	c := lotCursor{lots: lots}
	for _, l := range lots {
		c.total += l.qty
	}
	if len(lots) > 0 {
		c.left = lots[0].qty
	}
	c.draw(min(max(0, used), c.total))
	return c
}

// draw takes n units (at most total) and returns when the last lot it drew
// from delivers.
func (c *lotCursor) draw(n int64) time.Time {
	var ready time.Time
	c.total -= n
	for n > 0 {
		take := min(n, c.left)
		n, c.left = n-take, c.left-take
		ready = c.lots[c.i].deliverBy
		if c.left == 0 && c.i+1 < len(c.lots) {
			c.i++
			c.left = c.lots[c.i].qty
		}
	}
	return ready
}

// lastDelivery is when the last lot with units left delivers: no line
// served from now on is ready later.
func (c *lotCursor) lastDelivery() time.Time {
	if c.total == 0 {
		return time.Time{}
	}
	return c.lots[len(c.lots)-1].deliverBy
}

func (s *SKU) servePresale() (servedForm, lateReady) {
	var (
		f           servedForm
		lr          lateReady
		o           = &s.presale
		cur         = newLotCursor(s.lots, s.PresaleShipped)
		short       = o.units > cur.total
		last        = cur.lastDelivery()
		walkedUnits int64
		walkedFen   int64
	)
	for i, l := range o.lines {
		if i >= o.late && (cur.total == 0 || (!short && (l.ShipBy.IsZero() || !l.ShipBy.Before(last)))) {
			// The rest is all unserved (nothing left), or all served in
			// time (no lot delivers after its ship-by).
			n, u, fen := remainder(o, i, walkedUnits, walkedFen)
			if cur.total == 0 {
				f.unservedLines, f.unservedUnits, f.unservedFen = f.unservedLines+n, f.unservedUnits+u, f.unservedFen+fen
			}
			break
		}
		u, fen := l.Open(), UnshippedCompensationFen(l.ValueFen())
		walkedUnits, walkedFen = walkedUnits+u, walkedFen+fen
		if u > cur.total {
			f.unservedLines, f.unservedUnits, f.unservedFen = f.unservedLines+1, f.unservedUnits+u, f.unservedFen+fen
			continue
		}
		ready := cur.draw(u)
		late := !l.ShipBy.IsZero() && ready.After(l.ShipBy)
		if l.Late || late {
			f.lateFen += LateCompensationFen(l.ValueFen())
		}
		if l.Late {
			f.lateServed++
		}
		if late && !l.Late {
			lr.add(l, ready.Sub(l.ShipBy))
		}
	}
	return f, lr
}

func (lr *lateReady) add(l *Line, wait time.Duration) {
	if lr.lines == 0 {
		lr.first = l.OrderID
	}
	lr.lines++
	lr.units += l.Open()
	lr.fen += LateCompensationFen(l.ValueFen())
	lr.worst = max(lr.worst, wait)
}
