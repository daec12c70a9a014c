package projections

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"stockledger/ledger"
)

// Status is a SKU's listing status.
type Status string

// Statuses. A SKU is unlisted when events name it (a sale, a recount) before
// any listing did.
const (
	StatusListed   Status = "listed"
	StatusDelisted Status = "delisted"
	StatusUnlisted Status = "unlisted"
)

// Supplier is the latest capacity confirmation of one supplier: its total
// for the SKU by DeliverBy, counting units it has delivered already.
type Supplier struct {
	Qty       int64     `json:"qty"`
	DeliverBy time.Time `json:"deliver_by"`
	Seq       uint64    `json:"seq"`
	// Slot decides which confirmation holds (last writer by `at`).
	Slot Slot `json:"slot"`
}

// SKU is the folded state of one SKU. The zero value is not ready: use NewSKU
// (or Restore after loading). A SKU is not safe for concurrent use.
type SKU struct {
	Shop string `json:"shop"`
	SKU  string `json:"sku"`

	// Status, Title, PriceFen, SalesForm and the promise come from the
	// listing that holds StatusSlot (listing and delisting, by `at`).
	Status          Status           `json:"status"`
	StatusSlot      Slot             `json:"status_slot"`
	Title           string           `json:"title"`
	PriceFen        int64            `json:"price_fen"`
	SalesForm       ledger.SalesForm `json:"sales_form"`
	ShipWithinHours int              `json:"ship_within_hours"`
	ShipWithinDays  int              `json:"ship_within_days"`

	// Listed is the platform's figure. Listings and stock_set hold its slot
	// by `at`; sales and cancels move it without holding it.
	Listed     int64 `json:"listed"`
	ListedSlot Slot  `json:"listed_slot"`
	// OnHand is the physical stock. OnHandSet is true once the warehouse
	// figure was established: by the first spot listing, a recount, a
	// restock, a spot shipment or a restocked return. CountSlot holds the
	// latest recount.
	OnHand    int64 `json:"on_hand"`
	OnHandSet bool  `json:"on_hand_set"`
	CountSlot Slot  `json:"count_slot"`
	// PresaleShipped counts presale units shipped: they used up capacity.
	PresaleShipped int64 `json:"presale_shipped"`
	// Capacity sums the suppliers' latest confirmations.
	Capacity  int64               `json:"capacity"`
	Suppliers map[string]Supplier `json:"suppliers"`
	// SafetyStock is kept back from the platform (SafetySlot by `at`).
	SafetyStock int64 `json:"safety_stock"`
	SafetySlot  Slot  `json:"safety_slot"`

	// Synced is what the SKU last told the platform (Sync).
	Synced SyncState `json:"synced"`

	// Pace counts recent sales by minute of event time; LiveID is the live
	// session of the latest sale.
	Pace   Pace   `json:"pace"`
	LiveID string `json:"live_id,omitempty"`
	// Config is the fold's configuration, set by whoever loads the SKU; it
	// is not state and is not stored.
	Config FoldConfig `json:"-"`

	// Clock is the latest time the fold has seen, from event times and
	// Advance; open lines whose ship-by lies at or before it are late.
	Clock time.Time `json:"clock"`
	// NextDue is the earliest ship-by among open lines not yet late; zero
	// when there is none. The sweep reads it from stores.
	NextDue time.Time `json:"next_due,omitzero"`
	// LastSeq is the stream sequence of the last event applied to the SKU.
	LastSeq   uint64    `json:"last_seq"`
	UpdatedAt time.Time `json:"updated_at"`

	// Lines holds the lines the fold needs in memory: the open ones, the
	// early ones (events before their sale), and the ones closed since the
	// last Prune. Closed lines live in the store: the projector recalls one
	// (Recall) before folding an event that names it, so that a re-send
	// long after the stream's duplicate window is applied once, and memory
	// holds open lines only.
	Lines map[string]*Line `json:"-"`
	// Alerts holds the SKU's open alerts by key (kind, and order for
	// ship_late).
	Alerts map[string]*Alert `json:"-"`

	// spot and presale list the open lines of each form in serving order.
	// Derived: Restore rebuilds them.
	spot, presale openLines
	// lots are the suppliers' confirmations in supply order. Derived.
	lots []lot
	// served is what the last evaluation found of serving the open lines.
	served serving
	// texts keeps the last alert message of each kind (text); nil until
	// the SKU's first alert, as most SKUs never have one.
	texts *[textKinds]alertText
	held
}

// NewSKU returns the empty state of a SKU never seen.
func NewSKU(shop, sku string) *SKU {
	s := &SKU{Shop: strings.Clone(shop), SKU: strings.Clone(sku), Status: StatusUnlisted}
	s.Restore()
	return s
}

// Restore rebuilds what is derived from the stored state: the open lines in
// serving order with their totals, the supply lots, the serving figures.
// Callers set Lines and Alerts first (nil maps are made empty).
func (s *SKU) Restore() {
	if s.Suppliers == nil {
		s.Suppliers = make(map[string]Supplier)
	}
	if s.Lines == nil {
		s.Lines = make(map[string]*Line)
	}
	if s.Alerts == nil {
		s.Alerts = make(map[string]*Alert)
	}
	s.held.reset()
	s.spot, s.presale = openLines{}, openLines{}
	for _, l := range s.Lines {
		switch l.State() {
		case LineOpen:
			o := s.open(l.SalesForm)
			o.lines = append(o.lines, l)
		case LineClosed:
			s.retired = append(s.retired, l.OrderID) // the store has it
		}
	}
	for _, o := range []*openLines{&s.spot, &s.presale} {
		slices.SortFunc(o.lines, func(a, b *Line) int {
			if lineBefore(a, b) {
				return -1
			}
			return 1
		})
		for _, l := range o.lines {
			o.count(l, 1)
			if l.Late {
				o.late++
			}
		}
	}
	s.sortLots()
	s.served = s.serve()
}

// open returns the open lines of a sales form.
func (s *SKU) open(form ledger.SalesForm) *openLines {
	if form == ledger.Presale {
		return &s.presale
	}
	return &s.spot
}

// Committed is the open units of spot lines.
func (s *SKU) Committed() int64 { return s.spot.units }

// PresaleCommitted is the open units of presale lines.
func (s *SKU) PresaleCommitted() int64 { return s.presale.units }

// Available is on_hand − committed; below 0 the SKU is oversold.
func (s *SKU) Available() int64 { return s.OnHand - s.spot.units }

// CapacityLeft is capacity − presale_committed − presale_shipped; below 0
// capacity is exceeded.
func (s *SKU) CapacityLeft() int64 { return s.Capacity - s.presale.units - s.PresaleShipped }

// RealLimit is what the SKU can really still sell: available while it sells
// as spot, capacity_left while it sells as presale.
func (s *SKU) RealLimit() int64 {
	if s.SalesForm == ledger.Presale {
		return s.CapacityLeft()
	}
	return s.Available()
}

// Sellable is the figure the platform should show: the real limit less the
// safety stock, never below 0.
func (s *SKU) Sellable() int64 { return max(0, s.RealLimit()-s.SafetyStock) }

// OpenLines returns the open lines of both forms, each form in serving
// order (spot first). The slices are the SKU's own: do not change them.
func (s *SKU) OpenLines() (spot, presale []*Line) { return s.spot.lines, s.presale.lines }

// ErrRefused is matched (errors.Is) by an event the fold refuses to apply: the
// state is left as it was and the event belongs in the dead-letter stream.
var ErrRefused = errors.New("event refused by the fold")

// Apply folds event e, stored at stream sequence seq, into the SKU and returns
// the alert changes it caused (raised, updated or resolved), in order. The
// event must be valid (ledger.Event.ValidateStored) and name this SKU. An
// event the fold cannot apply (a listing that breaks the listing rule, a
// shipment or return of more units than the line has) is refused with an
// error matching ErrRefused, and the state is unchanged: a corrected re-send
// still applies. Applying a sequence at or below LastSeq is a no-op: a
// redelivered message changes nothing. An event whose natural key was
// applied before, or a setting older than its slot, is recorded (LastSeq
// moves) and changes nothing else.
func (s *SKU) Apply(seq uint64, e *ledger.Event) ([]Alert, error) {
	if e.Shop != s.Shop || e.SKU != s.SKU {
		return nil, fmt.Errorf("%w: event for %s/%s applied to %s/%s", ErrRefused, e.Shop, e.SKU, s.Shop, s.SKU)
	}
	if seq <= s.LastSeq {
		return nil, nil
	}
	if err := s.refusal(e); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	s.LastSeq = seq
	if e.At.After(s.UpdatedAt) {
		s.UpdatedAt = e.At.UTC() // never back: a late re-send changes nothing
	}
	s.Pace.observe(e.At)
	// Time passes with the events: lines due before this one happened are late.
	changes := s.advance(e.At, nil)
	if keyed(e) && !s.takeKey(e.Key()) {
		// Applied before, however long ago and whatever its `at` says now.
		return s.evaluate(seq, e.At, changes), nil
	}
	switch e.Type {
	case ledger.Listing, ledger.Delisting, ledger.StockSet, ledger.SafetyStockSet, ledger.CapacityConfirmed:
		s.setting(seq, e)
	case ledger.Restock:
		s.restock(e)
	case ledger.Recount:
		changes = s.recount(seq, e, changes)
	case ledger.Sale:
		changes = s.sale(seq, e, changes)
	default: // cancel, shipment, return, promise_changed
		changes = s.lineEvent(seq, e, changes)
	}
	return s.evaluate(seq, e.At, changes), nil
}

// refusal says why the fold cannot apply e, nil when it can.
func (s *SKU) refusal(e *ledger.Event) error {
	switch e.Type {
	case ledger.Listing:
		if s.StatusSlot.stale(e.ID, e.At) || s.knownKey(e.Key()) {
			return nil // recorded, changes nothing: no rule to break
		}
		st := ledger.ListingState{Known: s.Status != StatusUnlisted, Listed: s.Status == StatusListed,
			SalesForm: s.SalesForm, ShipWithinHours: s.ShipWithinHours, ShipWithinDays: s.ShipWithinDays}
		if rerr := ledger.CheckListing(st, e); rerr != nil {
			return rerr
		}
	case ledger.Cancel, ledger.Shipment, ledger.Return:
		return s.lineRefusal(e)
	}
	return nil
}

// setting applies a last-writer-wins setting: a listing, delisting,
// stock_set, safety_stock_set or capacity confirmation. One older than its
// slot changes nothing.
func (s *SKU) setting(seq uint64, e *ledger.Event) {
	switch e.Type {
	case ledger.Listing:
		if s.StatusSlot.wins(e.ID, e.At) {
			if e.SalesForm == ledger.Spot && !s.OnHandSet {
				s.OnHand, s.OnHandSet = ledger.Value(e.Stock), true
			}
			s.Status, s.Title, s.PriceFen = StatusListed, strings.Clone(e.Title), e.PriceFen
			s.SalesForm, s.ShipWithinHours, s.ShipWithinDays = e.SalesForm, e.ShipWithinHours, e.ShipWithinDays
		}
		if s.ListedSlot.wins(e.ID, e.At) {
			s.Listed = ledger.Value(e.Stock)
		}
	case ledger.Delisting:
		if s.StatusSlot.wins(e.ID, e.At) && s.Status == StatusListed {
			s.Status = StatusDelisted
		}
	case ledger.StockSet:
		if s.ListedSlot.wins(e.ID, e.At) {
			s.Listed = ledger.Value(e.Stock)
		}
	case ledger.SafetyStockSet:
		if s.SafetySlot.wins(e.ID, e.At) {
			s.SafetyStock = ledger.Value(e.Qty)
		}
	case ledger.CapacityConfirmed:
		sup := s.Suppliers[e.Supplier]
		if sup.Slot.wins(e.ID, e.At) {
			sup.Qty, sup.DeliverBy, sup.Seq = ledger.Value(e.Qty), e.DeliverBy.UTC(), seq
			s.Suppliers[e.Supplier] = sup
			s.sortLots()
		}
	}
}

// restock adds received goods (once per key: see Apply).
func (s *SKU) restock(e *ledger.Event) {
	s.OnHand += ledger.Value(e.Qty)
	s.OnHandSet = true
}

func (s *SKU) recount(seq uint64, e *ledger.Event, changes []Alert) []Alert {
	if !s.CountSlot.wins(e.ID, e.At) {
		return changes
	}
	counted, book := ledger.Value(e.Counted), s.OnHand
	s.OnHand, s.OnHandSet = counted, true
	key := alertKey(RecountMismatch, "")
	if counted == book {
		return s.resolve(changes, key, seq, e.At)
	}
	diff, word := book-counted, "short"
	if diff < 0 {
		diff, word = -diff, "over"
	}
	by := ""
	if e.CountedBy != "" {
		by = " by " + e.CountedBy
	}
	return s.raise(changes, Alert{
		Kind: RecountMismatch, Seq: seq, RaisedAt: e.At, UnitsShort: diff,
		Message: fmt.Sprintf("recount%s found %d units where the book had %d: %d units %s", by, counted, book, diff, word),
	})
}

// Advance moves the SKU's clock to now (never back), raises ship_late for
// every open line whose promise has passed, and re-judges what depends on
// lateness. It returns the alert changes.
func (s *SKU) Advance(now time.Time) []Alert {
	before := s.spot.late + s.presale.late
	changes := s.advance(now, nil)
	if s.spot.late+s.presale.late == before {
		return changes
	}
	// A presale line now past its promise leaves capacity_late for ship_late.
	s.served = s.serve()
	return s.evaluateCapacityLate(s.LastSeq, now, changes)
}

func (s *SKU) advance(now time.Time, changes []Alert) []Alert {
	if now.After(s.Clock) {
		s.Clock = now.UTC()
	}
	for _, o := range []*openLines{&s.spot, &s.presale} {
		for o.late < len(o.lines) {
			l := o.lines[o.late]
			if l.ShipBy.IsZero() || l.ShipBy.After(s.Clock) {
				break
			}
			changes = s.markLate(o, l, changes)
		}
	}
	s.NextDue = earliest(s.spot.nextDue(), s.presale.nextDue())
	return changes
}

// earliest returns the earlier of two times, a zero time counting as none.
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// sortLots rebuilds the supply lots and the capacity from the suppliers'
// confirmations: by deliver_by, then supplier.
func (s *SKU) sortLots() {
	s.lots = s.lots[:0]
	s.Capacity = 0
	for _, name := range slices.Sorted(maps.Keys(s.Suppliers)) {
		sup := s.Suppliers[name]
		s.Capacity += sup.Qty
		if sup.Qty > 0 {
			s.lots = append(s.lots, lot{qty: sup.Qty, deliverBy: sup.DeliverBy})
		}
	}
	slices.SortStableFunc(s.lots, func(a, b lot) int { return a.deliverBy.Compare(b.deliverBy) })
}

// alertKey is an alert's key within its SKU: its kind, and the order for
// ship_late.
func alertKey(kind AlertKind, orderID string) string {
	if orderID == "" {
		return string(kind)
	}
	return string(kind) + "/" + orderID
}

// byID orders lines by order id, for stores.
func byID(a, b *Line) int { return cmp.Compare(a.OrderID, b.OrderID) }

// clone copies the SKU's stored state (scalars, suppliers and their slots),
// without lines, alerts or what Restore derives, for a store to keep.
func (s *SKU) clone() *SKU {
	c := &SKU{Shop: s.Shop, SKU: s.SKU, Status: s.Status, StatusSlot: s.StatusSlot.clone(), Title: s.Title,
		PriceFen: s.PriceFen, SalesForm: s.SalesForm, ShipWithinHours: s.ShipWithinHours, ShipWithinDays: s.ShipWithinDays,
		Listed: s.Listed, ListedSlot: s.ListedSlot.clone(), OnHand: s.OnHand, OnHandSet: s.OnHandSet,
		CountSlot: s.CountSlot.clone(), PresaleShipped: s.PresaleShipped, Capacity: s.Capacity,
		Suppliers: make(map[string]Supplier, len(s.Suppliers)), SafetyStock: s.SafetyStock,
		SafetySlot: s.SafetySlot.clone(), Pace: s.Pace, LiveID: s.LiveID, Config: s.Config, Clock: s.Clock,
		NextDue: s.NextDue, LastSeq: s.LastSeq, UpdatedAt: s.UpdatedAt, Synced: s.Synced}
	for name, sup := range s.Suppliers {
		sup.Slot = sup.Slot.clone()
		c.Suppliers[name] = sup
	}
	return c
}
