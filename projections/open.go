package projections

import (
	"slices"
	"time"
)

// openLines lists the open lines of one sales form in serving order
// (lineBefore), with running totals, so that serving them from stock or
// capacity walks only as far as it must. The late lines, past their
// ship-by, are always a prefix: a line is late exactly when its ship-by is
// at or before the SKU's clock.
type openLines struct {
	lines []*Line
	// late counts the prefix of lines marked Late.
	late int
	// units sums the open units; unshippedFen the unshipped compensation
	// of every line's value; lateFen the late compensation of the late
	// lines' values.
	units, unshippedFen, lateFen int64
}

// count adds (sign 1) or removes (sign -1) a line's figures from the totals.
// Callers remove a line's figures before changing its units, value or
// lateness and add them back after.
func (o *openLines) count(l *Line, sign int64) {
	o.units += sign * l.Open()
	o.unshippedFen += sign * UnshippedCompensationFen(l.ValueFen())
	if l.Late {
		o.lateFen += sign * LateCompensationFen(l.ValueFen())
	}
}

// add puts a line in serving order, with its figures. A line marked Late
// lands in the late prefix (its ship-by is at or before the clock); a line
// not marked Late whose ship-by has passed lands at the prefix's end, and the
// caller marks it late at once (SKU.markLate).
func (o *openLines) add(l *Line) {
	i := o.search(l)
	o.lines = slices.Insert(o.lines, i, l)
	o.count(l, 1)
	if l.Late {
		o.late++
	}
}

// search returns the first index whose line is not served before l.
func (o *openLines) search(l *Line) int {
	i, _ := slices.BinarySearchFunc(o.lines, l, func(x, t *Line) int {
		if lineBefore(x, t) {
			return -1
		}
		return 1
	})
	return i
}

// index finds a line by its serving order (sequences are unique, so no two
// lines share a place), or -1.
func (o *openLines) index(l *Line) int {
	if i := o.search(l); i < len(o.lines) && o.lines[i] == l {
		return i
	}
	// Not where its order says: not expected, but never lose track of it.
	return slices.Index(o.lines, l)
}

// drop takes a line out without its figures: the caller removed them
// (count) before changing the line.
func (o *openLines) drop(l *Line) {
	i := o.index(l)
	if i < 0 {
		return
	}
	if l.Late {
		o.late--
	}
	if i == 0 {
		// The usual shipment takes the front: no move of the rest.
		o.lines[0] = nil
		o.lines = o.lines[1:]
		return
	}
	o.lines = slices.Delete(o.lines, i, i+1)
}

// take takes a line out with its figures.
func (o *openLines) take(l *Line) {
	o.count(l, -1)
	o.drop(l)
}

// nextDue is the ship-by of the first line not yet late, zero when none
// has a promise.
func (o *openLines) nextDue() (t time.Time) {
	if o.late < len(o.lines) {
		t = o.lines[o.late].ShipBy
	}
	return t
}
