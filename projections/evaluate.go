package projections

import (
	"fmt"
	"stockledger/ledger"
	"time"

	"github.com/google/uuid"
)

// evaluate brings the SKU-level alerts (oversold, capacity_exceeded,
// capacity_late, phantom_stock, sellout_soon) in line with the state after
// event seq.
func (s *SKU) evaluate(seq uint64, at time.Time, changes []Alert) []Alert {
	s.served = s.serve()
	// oversold: spot lines past real stock.
	if short := s.spot.units - s.OnHand; short > 0 {
		f := s.served.spot
		changes = s.raise(changes, Alert{Kind: Oversold, Seq: seq, RaisedAt: at, UnitsShort: short, ExposureFen: f.unservedFen,
			Message: s.text(textOversold, alertArgs{s.spot.units, s.OnHand, f.unservedLines, f.unservedUnits, f.unservedFen, 0, ""}, oversoldText)})
	} else {
		changes = s.resolve(changes, alertKey(Oversold, ""), seq, at)
	}
	// capacity_exceeded: presale lines the confirmed lots cannot serve.
	if left := s.CapacityLeft(); left < 0 {
		f := s.served.presale
		changes = s.raise(changes, Alert{Kind: CapacityExceeded, Seq: seq, RaisedAt: at, UnitsShort: -left, ExposureFen: f.unservedFen,
			Message: s.text(textCapacityExceeded, alertArgs{s.presale.units, s.PresaleShipped, s.Capacity, f.unservedLines, f.unservedUnits, f.unservedFen, ""}, capacityExceededText)})
	} else {
		changes = s.resolve(changes, alertKey(CapacityExceeded, ""), seq, at)
	}
	changes = s.evaluateCapacityLate(seq, at, changes)
	// phantom_stock: the platform offers units past what it should show.
	if units := s.phantomUnits(); units > 0 {
		per := UnshippedCompensationFen(s.PriceFen)
		changes = s.raise(changes, Alert{Kind: PhantomStock, Seq: seq, RaisedAt: at, UnitsShort: units, ExposureFen: units * per,
			// The message names only the alert's own figures: a sale that
			// moves listed and the real limit together leaves the alert as
			// it is, instead of publishing a new revision per sale.
			Message: s.text(textPhantomStock, alertArgs{units, units * per, s.presaleFlag(), s.SafetyStock, 0, 0, ""}, phantomStockText)})
	} else {
		changes = s.resolve(changes, alertKey(PhantomStock, ""), seq, at)
	}
	return s.evaluatePace(seq, at, changes)
}

// evaluateCapacityLate raises capacity_late while served presale lines will
// be ready only after their ship-by, and resolves it otherwise.
func (s *SKU) evaluateCapacityLate(seq uint64, at time.Time, changes []Alert) []Alert {
	lr := s.served.lateReady
	if lr.lines == 0 {
		return s.resolve(changes, alertKey(CapacityLate, ""), seq, at)
	}
	days := (lr.worst + 24*time.Hour - 1) / (24 * time.Hour)
	return s.raise(changes, Alert{Kind: CapacityLate, Seq: seq, RaisedAt: at, UnitsShort: lr.units, ExposureFen: lr.fen,
		Message: s.text(textCapacityLate, alertArgs{lr.lines, lr.units, int64(days), lr.fen, 0, 0, lr.first}, capacityLateText)})
}

// Alert messages by kind: each is worked out from its figures (alertArgs)
// alone, so that SKU.text can keep the last one.
func oversoldText(a alertArgs) string {
	return fmt.Sprintf("%d units sold as spot with %d on hand: %s (%s) cannot ship, compensation %s",
		a.a, a.b, plural(a.c, "line"), plural(a.d, "unit"), Yuan(a.e))
}

func capacityExceededText(a alertArgs) string {
	return fmt.Sprintf("%d presale units sold and %d shipped against %d confirmed by suppliers: %s (%s) cannot ship, compensation %s",
		a.a, a.b, a.c, plural(a.d, "line"), plural(a.e, "unit"), Yuan(a.f))
}

func capacityLateText(a alertArgs) string {
	return fmt.Sprintf("%s (%s, first %s) will be ready only after their ship-by: the suppliers' lots deliver up to %s late, late compensation %s",
		plural(a.a, "presale line"), plural(a.b, "unit"), a.s, plural(a.c, "day"), Yuan(a.d))
}

func phantomStockText(a alertArgs) string {
	return fmt.Sprintf("the platform offers %s more than it should show (%s): selling them risks %s",
		plural(a.a, "unit"), limitName(a.c == 1, a.d), Yuan(a.b))
}

// presaleFlag is 1 for a presale SKU, for alertArgs.
func (s *SKU) presaleFlag() int64 {
	if s.SalesForm == ledger.Presale {
		return 1
	}
	return 0
}

// limitName names what sellable is taken from.
func limitName(presale bool, safety int64) string {
	what := "available stock"
	if presale {
		what = "confirmed supplier capacity left"
	}
	if safety > 0 {
		what += fmt.Sprintf(" less %d kept back", safety)
	}
	return what
}

// alertArgs are the figures an alert's message is made of: up to six
// numbers and a text.
type alertArgs struct {
	a, b, c, d, e, f int64
	s                string
}

// Message kinds kept by SKU.text, one slot each.
const (
	textOversold = iota
	textCapacityExceeded
	textCapacityLate
	textPhantomStock
	textSelloutSoon
	textKinds
)

// alertText is the last message of one kind a SKU worked out, and its
// figures.
type alertText struct {
	args alertArgs
	msg  string
	set  bool
}

// text returns the message of kind k for args: the one worked out last
// when the figures have not moved (most evaluations, since an open alert is
// evaluated at every event of its SKU), else format(args), kept.
func (s *SKU) text(k int, args alertArgs, format func(alertArgs) string) string {
	if s.texts == nil {
		s.texts = new([textKinds]alertText)
	}
	t := &s.texts[k]
	if !t.set || t.args != args {
		*t = alertText{args: args, msg: format(args), set: true}
	}
	return t.msg
}

// phantomUnits is how far a listed SKU's platform figure exceeds sellable.
func (s *SKU) phantomUnits() int64 {
	if s.Status != StatusListed {
		return 0
	}
	return max(0, s.Listed-s.Sellable())
}

// raise opens the alert a describes, or updates the open alert of the same
// key when its figures changed. It fills the alert's identity.
func (s *SKU) raise(changes []Alert, a Alert) []Alert {
	key := alertKey(a.Kind, a.OrderID)
	if cur, ok := s.Alerts[key]; ok {
		if cur.UnitsShort == a.UnitsShort && cur.ExposureFen == a.ExposureFen && cur.Message == a.Message {
			return changes
		}
		cur.UnitsShort, cur.ExposureFen, cur.Message = a.UnitsShort, a.ExposureFen, a.Message
		cur.UpdatedSeq, cur.Rev = max(s.LastSeq, cur.UpdatedSeq), cur.Rev+1
		return append(changes, *cur)
	}
	a.Shop, a.SKU, a.State = s.Shop, s.SKU, AlertOpen
	a.RaisedAt = a.RaisedAt.UTC()
	a.ID = alertID(s.Shop, s.SKU, key, a.Seq)
	a.UpdatedSeq, a.Rev = max(s.LastSeq, a.Seq), 1
	s.Alerts[key] = &a
	return append(changes, a)
}

// resolve closes the open alert of key, if there is one.
func (s *SKU) resolve(changes []Alert, key string, seq uint64, at time.Time) []Alert {
	cur, ok := s.Alerts[key]
	if !ok {
		return changes
	}
	delete(s.Alerts, key)
	cur.State = AlertResolved
	t := at.UTC()
	cur.ResolvedAt = &t
	cur.UpdatedSeq, cur.Rev = seq, cur.Rev+1
	return append(changes, *cur)
}

var alertNamespace = uuid.MustParse("5b0c8a4e-3f1d-4b6e-9a57-1d2f3c4b5a69")

// alertID is deterministic, so that a rebuild from the stream gives every
// alert the id it had.
func alertID(shop, sku, key string, seq uint64) string {
	return uuid.NewSHA1(alertNamespace, fmt.Appendf(nil, "%s/%s/%s/%d", shop, sku, key, seq)).String()
}
