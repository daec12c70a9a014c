package projections

import (
	"fmt"
	"strings"
	"time"

	"stockledger/ledger"
)

// line returns the SKU's line of an order, made (early) when unknown.
func (s *SKU) line(orderID string) *Line {
	l, ok := s.Lines[orderID]
	if !ok {
		// A decoded event's strings share one allocation: a copy keeps
		// the held line from holding the whole event.
		orderID = strings.Clone(orderID)
		l = &Line{OrderID: orderID}
		s.Lines[orderID] = l
		s.fresh[orderID] = struct{}{}
	}
	return l
}

// lineRefusal refuses a cancel, shipment or return of more units than its
// line has (open units; shipped units not yet returned), when the line's
// sale is known and the document is new. A line whose sale is still to come
// takes any: its events are limited to what is open when the sale arrives.
func (s *SKU) lineRefusal(e *ledger.Event) error {
	l, ok := s.Lines[e.OrderID]
	if !ok || !l.sold() || e.Qty == nil || l.hasDoc(docKey(e.Type, e.Doc())) {
		return nil
	}
	qty := *e.Qty
	switch e.Type {
	case ledger.Return:
		if back := l.Shipped - l.Returned; qty > back {
			return fmt.Errorf("return %s of %d units: line %s has %d shipped units not yet returned", e.ReturnID, qty, l.OrderID, back)
		}
	default:
		if open := l.Open(); qty > open {
			return fmt.Errorf("%s %s of %d units: line %s has %d open units", e.Type, e.Doc(), qty, l.OrderID, open)
		}
	}
	return nil
}

// sale records an order line, once: a re-sent sale changes nothing. Events
// of the line that came before it are applied now, limited to its units.
func (s *SKU) sale(seq uint64, e *ledger.Event, changes []Alert) []Alert {
	l := s.line(e.OrderID)
	if l.sold() {
		return changes // its key was applied: counted once
	}
	form := s.SalesForm
	if form == "" {
		form = ledger.Spot
	}
	shipBy := time.Time{}
	if e.ShipBy != nil {
		shipBy = *e.ShipBy
	} else if due, ok := ledger.ShipDue(e.At, form, s.ShipWithinHours, s.ShipWithinDays); ok {
		shipBy = due
	}
	qty := ledger.Value(e.Qty)
	l.ParentOrderID, l.Qty, l.UnitPriceFen, l.SalesForm = strings.Clone(e.ParentOrderID), qty, e.UnitPriceFen, form
	l.SoldAt, l.ShipBy, l.Seq = e.At.UTC(), shipBy.UTC(), seq
	// The sale's own promise holds the slot from its at; no id is kept:
	// a promise change at the same instant comes later in the stream and
	// wins, and no promise change has the sale's id.
	l.Promise = Slot{At: e.At.UTC()}
	s.touch(l)
	s.Pace.add(e.At, qty)
	if e.LiveID != "" {
		s.LiveID = strings.Clone(e.LiveID)
	}
	s.Listed = max(0, s.Listed-qty) // the platform's figure never goes below zero
	o := s.open(form)
	o.add(l)
	if s.due(l) {
		// A sale that arrives after its promise already passed is late at once.
		changes = s.markLate(o, l, changes)
	}
	s.NextDue = earliest(s.spot.nextDue(), s.presale.nextDue())
	early := l.Early
	l.Early = nil
	for i := range early {
		ev := early[i].event(s.Shop, s.SKU, l.OrderID)
		changes = s.lineChange(l, seq, &ev, true, changes)
	}
	return changes
}

// due reports whether a line's promise lies at or before the SKU's clock.
func (s *SKU) due(l *Line) bool { return !l.ShipBy.IsZero() && !l.ShipBy.After(s.Clock) }

// lineEvent applies a cancel, shipment, return or promise change to its
// line, once per document; before the line's sale it is kept for the sale.
func (s *SKU) lineEvent(seq uint64, e *ledger.Event, changes []Alert) []Alert {
	l := s.line(e.OrderID)
	if e.Type != ledger.PromiseChanged {
		key := docKey(e.Type, e.Doc())
		if l.hasDoc(key) {
			return changes // applied before
		}
		l.Docs = append(l.Docs, key)
		s.touch(l)
	}
	if !l.sold() {
		l.Early = append(l.Early, earlyOf(seq, e))
		s.touch(l)
		return changes
	}
	return s.lineChange(l, seq, e, false, changes)
}

// lineChange applies e to a sold line. With limit, units past what the line
// has are cut to what it has (an event that came before its sale); without,
// lineRefusal has refused them already.
func (s *SKU) lineChange(l *Line, seq uint64, e *ledger.Event, limit bool, changes []Alert) []Alert {
	if e.Type == ledger.PromiseChanged {
		return s.promise(l, seq, e, changes)
	}
	n := ledger.Value(e.Qty)
	switch {
	case e.Type == ledger.Return && limit:
		n = min(n, l.Shipped-l.Returned)
	case e.Qty == nil:
		n = l.Open() // every open unit
	case limit:
		n = min(n, l.Open())
	}
	if n <= 0 {
		return changes
	}
	if e.Type == ledger.Return {
		l.Returned += n
		if r := min(restockedOf(e), n); r > 0 {
			s.OnHand += r // a returned presale unit is physical stock now
			s.OnHandSet = true
		}
		return changes
	}
	o := s.open(l.SalesForm)
	o.count(l, -1)
	if e.Type == ledger.Cancel {
		l.Cancelled += n
		s.Listed += n
	} else {
		l.Shipped += n
		if l.SalesForm == ledger.Presale {
			s.PresaleShipped += n
		} else {
			s.OnHand -= n
			s.OnHandSet = true
		}
	}
	if l.Open() > 0 {
		o.count(l, 1)
		return s.updateLate(l, changes)
	}
	o.drop(l)
	l.ClosedAt = e.At.UTC()
	l.Late = false
	s.retired = append(s.retired, l.OrderID)
	s.NextDue = earliest(s.spot.nextDue(), s.presale.nextDue())
	return s.resolve(changes, alertKey(ShipLate, l.OrderID), seq, e.At)
}

// promise moves a line's ship-by when the change is newer than the promise
// that holds (the sale's own from its `at`).
func (s *SKU) promise(l *Line, seq uint64, e *ledger.Event, changes []Alert) []Alert {
	if !l.Promise.wins(e.ID, e.At) {
		return changes
	}
	s.touch(l)
	if l.State() != LineOpen {
		l.ShipBy = e.ShipBy.UTC()
		return changes
	}
	o := s.open(l.SalesForm)
	wasLate := l.Late
	o.take(l)
	l.Late = false
	l.ShipBy = e.ShipBy.UTC()
	o.add(l)
	if s.due(l) {
		changes = s.markLate(o, l, changes)
	} else if wasLate {
		changes = s.resolve(changes, alertKey(ShipLate, l.OrderID), seq, e.At)
	}
	s.NextDue = earliest(s.spot.nextDue(), s.presale.nextDue())
	return changes
}

// markLate marks an open line late (it sits at the end of o's late prefix)
// and raises its ship_late alert.
func (s *SKU) markLate(o *openLines, l *Line, changes []Alert) []Alert {
	o.count(l, -1)
	l.Late = true
	o.count(l, 1)
	o.late++
	s.touch(l)
	return s.raise(changes, s.shipLate(l))
}

// updateLate brings a late line's ship_late alert in line with its open
// units and value.
func (s *SKU) updateLate(l *Line, changes []Alert) []Alert {
	if !l.Late {
		return changes
	}
	return s.raise(changes, s.shipLate(l))
}

// shipLate describes a late line's ship_late alert.
func (s *SKU) shipLate(l *Line) Alert {
	v := l.ValueFen()
	return Alert{
		Kind: ShipLate, OrderID: l.OrderID, Seq: l.Seq, RaisedAt: l.ShipBy,
		UnitsShort: l.Open(), ExposureFen: LateCompensationFen(v),
		Message: fmt.Sprintf("line %s (%s open, %s) was due to ship by %s and has not shipped: late compensation %s",
			l.OrderID, plural(l.Open(), "unit"), Yuan(v), l.ShipBy.Format(time.RFC3339), Yuan(LateCompensationFen(v))),
	}
}

// plural writes a count and its noun: "1 line", "3 lines".
func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
