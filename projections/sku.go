package projections

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

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

// OrderState is where an order stands.
type OrderState string

// Order states.
const (
	OrderOpen      OrderState = "open"
	OrderShipped   OrderState = "shipped"
	OrderCancelled OrderState = "cancelled"
)

// Order is one sale of one SKU. It keeps the sales form and ship promise under
// which it was sold.
type Order struct {
	ID           string           `json:"order_id"`
	Qty          int64            `json:"qty"`
	UnitPriceFen int64            `json:"unit_price_fen"`
	SalesForm    ledger.SalesForm `json:"sales_form"`
	SoldAt       time.Time        `json:"sold_at"`
	// Due is when the order must ship; zero when the SKU had no promise.
	Due      time.Time  `json:"due,omitzero"`
	Seq      uint64     `json:"seq"`
	State    OrderState `json:"state"`
	Late     bool       `json:"late"`
	ClosedAt time.Time  `json:"closed_at,omitzero"`
	// Early is true while only a cancel or a shipment of the order has been
	// seen: its sale arrived late or not yet. The sale, when it comes,
	// counts as sold and closed at once.
	Early bool `json:"early,omitempty"`
}

// ValueFen is the order's value: qty × unit price.
func (o *Order) ValueFen() int64 { return o.Qty * o.UnitPriceFen }

// Supplier is the latest capacity confirmation of one supplier.
type Supplier struct {
	Qty       int64     `json:"qty"`
	DeliverBy time.Time `json:"deliver_by"`
	Seq       uint64    `json:"seq"`
}

// SKU is the folded state of one SKU. The zero value is not ready: use NewSKU.
// A SKU is not safe for concurrent use.
type SKU struct {
	Shop string `json:"shop"`
	SKU  string `json:"sku"`

	Status          Status           `json:"status"`
	Title           string           `json:"title"`
	PriceFen        int64            `json:"price_fen"`
	SalesForm       ledger.SalesForm `json:"sales_form"`
	ShipWithinHours int              `json:"ship_within_hours"`
	ShipWithinDays  int              `json:"ship_within_days"`

	Listed           int64 `json:"listed"`
	OnHand           int64 `json:"on_hand"`
	Committed        int64 `json:"committed"`
	Capacity         int64 `json:"capacity"`
	PresaleCommitted int64 `json:"presale_committed"`
	// OnHandSet is true once the warehouse figure was established: by the
	// first spot listing, a recount, a restock or a shipment.
	OnHandSet bool `json:"on_hand_set"`

	Suppliers map[string]Supplier `json:"suppliers"`

	// Pace counts recent sales by minute of event time; LiveID is the live
	// session of the latest sale.
	Pace   Pace   `json:"pace"`
	LiveID string `json:"live_id,omitempty"`
	// Config is the fold's configuration, set by whoever loads the SKU; it
	// is not state and is not stored.
	Config FoldConfig `json:"-"`

	// Clock is the latest time the fold has seen, from event times and
	// Advance; orders whose promise lies before it are late.
	Clock time.Time `json:"clock"`
	// NextDue is a lower bound of the earliest promise among open orders not
	// yet late; zero when there is none.
	NextDue time.Time `json:"next_due,omitzero"`
	// LastSeq is the stream sequence of the last event applied to the SKU.
	LastSeq   uint64    `json:"last_seq"`
	UpdatedAt time.Time `json:"updated_at"`

	// Orders holds the orders the fold needs in memory: the open ones, the
	// early ones (a cancel or shipment whose sale is still to come), and the
	// ones closed since the last Prune. Closed orders live in the store: the
	// projector recalls one (Recall) before folding an event that names it,
	// so that a sale re-sent after the stream's duplicate window is still
	// counted once, and memory holds open orders only.
	Orders map[string]*Order `json:"-"`
	// open lists open orders oldest first (by stream sequence).
	open []*Order
	// retired lists orders closed since the last Prune: Prune forgets those
	// a commit has written.
	retired []string
	// ordersHigh is the most orders Orders has held since it was last made
	// anew: a Go map keeps the room of its largest size, so Prune makes a
	// small one once a burst (a link drop, a catch-up batch) has passed.
	ordersHigh int
	// Alerts holds the SKU's open alerts by key (kind, and order for ship_late).
	Alerts map[string]*Alert `json:"-"`

	dirty map[string]struct{}
	// fresh holds the orders created in memory since the last ClearDirty:
	// no store has been given them yet.
	fresh map[string]struct{}
	// spotOpen and presaleOpen total the open orders of each sales form,
	// so that the unserved orders of an oversold SKU are found by walking
	// only the orders served (see unserved). Derived: Restore rebuilds them.
	spotOpen, presaleOpen openTotal
}

// openTotal sums open orders of one sales form.
type openTotal struct{ orders, qty, compFen int64 }

// totals returns the open-order totals of a sales form.
func (s *SKU) totals(form ledger.SalesForm) *openTotal {
	if form == ledger.Presale {
		return &s.presaleOpen
	}
	return &s.spotOpen
}

// count adds (sign 1) or removes (sign -1) an open order from the totals.
func (s *SKU) count(o *Order, sign int64) {
	t := s.totals(o.SalesForm)
	t.orders += sign
	t.qty += sign * o.Qty
	t.compFen += sign * UnshippedCompensationFen(o.ValueFen())
}

// NewSKU returns the empty state of a SKU never seen.
func NewSKU(shop, sku string) *SKU {
	return &SKU{
		Shop: shop, SKU: sku, Status: StatusUnlisted,
		Suppliers: make(map[string]Supplier),
		Orders:    make(map[string]*Order),
		Alerts:    make(map[string]*Alert),
		dirty:     make(map[string]struct{}),
		fresh:     make(map[string]struct{}),
	}
}

// Restore rebuilds the derived indexes of a SKU loaded from a store: the
// oldest-first list of open orders. Callers set Orders and Alerts first.
func (s *SKU) Restore() {
	if s.Suppliers == nil {
		s.Suppliers = make(map[string]Supplier)
	}
	if s.Orders == nil {
		s.Orders = make(map[string]*Order)
	}
	if s.Alerts == nil {
		s.Alerts = make(map[string]*Alert)
	}
	s.dirty, s.fresh = make(map[string]struct{}), make(map[string]struct{})
	s.open, s.retired = s.open[:0], s.retired[:0]
	for _, o := range s.Orders {
		switch {
		case o.State == OrderOpen && !o.Early:
			s.open = append(s.open, o)
		case !o.Early:
			s.retired = append(s.retired, o.ID) // closed: the store has it
		}
	}
	slices.SortFunc(s.open, func(a, b *Order) int { return cmp.Compare(a.Seq, b.Seq) })
	s.spotOpen, s.presaleOpen = openTotal{}, openTotal{}
	for _, o := range s.open {
		s.count(o, 1)
	}
}

// DirtyOrders returns the orders changed since the last ClearDirty, for a
// store to write.
func (s *SKU) DirtyOrders() []*Order {
	out := make([]*Order, 0, len(s.dirty))
	for id := range s.dirty {
		out = append(out, s.Orders[id])
	}
	slices.SortFunc(out, func(a, b *Order) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// ClearDirty forgets which orders changed, and which are new; call it once
// a store has them (Commit returned nil, or Prepare returned).
func (s *SKU) ClearDirty() {
	s.dirty = emptied(s.dirty)
	s.fresh = emptied(s.fresh)
}

// smallMap is the size under which an emptied or pruned map is kept for
// reuse rather than made anew.
const smallMap = 256

// emptied returns m empty: cleared when it is small, a new map when it is
// large, so that a burst does not keep its room for good.
func emptied(m map[string]struct{}) map[string]struct{} {
	if len(m) <= smallMap {
		clear(m)
		return m
	}
	return make(map[string]struct{})
}

// Fresh reports whether the order was created in memory since the last
// ClearDirty: a store has never been given it, and may insert it without
// looking for an older copy.
func (s *SKU) Fresh(id string) bool {
	_, ok := s.fresh[id]
	return ok
}

// NeedsOrder reports whether e names an order the SKU does not hold in
// memory: one the store may know, closed. Before applying such an event the
// caller recalls the order from the store (Store.KnownOrders, then Recall),
// or the fold would take a re-sent sale of a closed order for a new one.
func (s *SKU) NeedsOrder(e *ledger.Event) bool {
	switch e.Type {
	case ledger.Sale, ledger.Cancel, ledger.Shipment:
		_, ok := s.Orders[e.OrderID]
		return !ok
	}
	return false
}

// Recall puts back a closed order the store returned, so that the fold
// recognizes it; the next Prune forgets it again. An order the SKU holds, or
// one that is open or early (LoadSKU returns those; the store cannot hold a
// newer one than memory), is left alone.
func (s *SKU) Recall(o Order) {
	if _, ok := s.Orders[o.ID]; ok || o.State == OrderOpen || o.Early {
		return
	}
	s.Orders[o.ID] = &o
	s.retired = append(s.retired, o.ID)
}

// Prune forgets the orders closed since the last Prune that are not dirty:
// a commit has written them, and the store answers for them from now on.
// The projector calls it once a batch is committed.
func (s *SKU) Prune() {
	s.ordersHigh = max(s.ordersHigh, len(s.Orders))
	keep := s.retired[:0]
	for _, id := range s.retired {
		o, ok := s.Orders[id]
		if !ok {
			continue
		}
		if _, dirty := s.dirty[id]; dirty {
			keep = append(keep, id)
			continue
		}
		if o.State != OrderOpen && !o.Early {
			delete(s.Orders, id)
		}
	}
	clear(s.retired[len(keep):])
	s.retired = keep
	if s.ordersHigh > smallMap && len(s.Orders) < s.ordersHigh/4 {
		// Copied into a map sized for what it holds (maps.Clone would keep
		// the old one's room).
		orders := make(map[string]*Order, len(s.Orders))
		for id, o := range s.Orders {
			orders[id] = o
		}
		s.Orders, s.ordersHigh = orders, len(orders)
	}
}

// OpenOrders returns the open orders, oldest first. The slice is the SKU's
// own: do not change it.
func (s *SKU) OpenOrders() []*Order { return s.open }

// ErrRefused is matched (errors.Is) by an event the fold refuses to apply: the
// state is left as it was and the event belongs in the dead-letter stream.
var ErrRefused = errors.New("event refused by the fold")

// Apply folds event e, stored at stream sequence seq, into the SKU and returns
// the alert changes it caused (raised, updated or resolved), in order. The
// event must be valid (ledger.Event.Validate) and name this SKU. An event that
// breaks the listing rule is refused with an error matching ErrRefused, and
// the state is unchanged. Applying a sequence at or below LastSeq is a no-op:
// a redelivered message changes nothing.
func (s *SKU) Apply(seq uint64, e *ledger.Event) ([]Alert, error) {
	if e.Shop != s.Shop || e.SKU != s.SKU {
		return nil, fmt.Errorf("%w: event for %s/%s applied to %s/%s", ErrRefused, e.Shop, e.SKU, s.Shop, s.SKU)
	}
	if seq <= s.LastSeq {
		return nil, nil
	}
	if e.Type == ledger.Listing {
		st := ledger.ListingState{Known: s.Status != StatusUnlisted, Listed: s.Status == StatusListed,
			SalesForm: s.SalesForm, ShipWithinHours: s.ShipWithinHours, ShipWithinDays: s.ShipWithinDays}
		if rerr := ledger.CheckListing(st, e); rerr != nil {
			return nil, fmt.Errorf("%w: %s", ErrRefused, rerr.Error())
		}
	}
	var changes []Alert
	s.LastSeq = seq
	s.UpdatedAt = e.At.UTC()
	s.Pace.observe(e.At)
	// Time passes with the events: orders due before this one happened are late.
	changes = s.advance(e.At, changes)

	switch e.Type {
	case ledger.Listing:
		if e.SalesForm == ledger.Spot && !s.OnHandSet {
			s.OnHand, s.OnHandSet = ledger.Value(e.Stock), true
		}
		s.Status, s.Title, s.PriceFen = StatusListed, e.Title, e.PriceFen
		s.SalesForm, s.ShipWithinHours, s.ShipWithinDays = e.SalesForm, e.ShipWithinHours, e.ShipWithinDays
		s.Listed = ledger.Value(e.Stock)
	case ledger.Delisting:
		if s.Status == StatusListed {
			s.Status = StatusDelisted
		}
	case ledger.StockSet:
		s.Listed = ledger.Value(e.Stock)
	case ledger.Restock:
		s.OnHand += ledger.Value(e.Qty)
		s.OnHandSet = true
	case ledger.Recount:
		changes = s.recount(seq, e, changes)
	case ledger.CapacityConfirmed:
		s.Suppliers[e.Supplier] = Supplier{Qty: ledger.Value(e.Qty), DeliverBy: e.DeliverBy.UTC(), Seq: seq}
		s.Capacity = 0
		for _, sup := range s.Suppliers {
			s.Capacity += sup.Qty
		}
	case ledger.Sale:
		changes = s.sale(seq, e, changes)
	case ledger.Cancel:
		changes = s.closeOrder(seq, e, OrderCancelled, changes)
	case ledger.Shipment:
		changes = s.closeOrder(seq, e, OrderShipped, changes)
	}
	return s.evaluatePace(seq, e.At, s.evaluate(seq, e.At, changes)), nil
}

// Advance moves the SKU's clock to now (never back) and raises ship_late for
// every open order whose promise has passed. It returns the alert changes.
func (s *SKU) Advance(now time.Time) []Alert {
	return s.advance(now, nil)
}

func (s *SKU) advance(now time.Time, changes []Alert) []Alert {
	if now.After(s.Clock) {
		s.Clock = now.UTC()
	}
	if s.NextDue.IsZero() || s.NextDue.After(s.Clock) {
		return changes
	}
	var next time.Time
	for _, o := range s.open {
		if o.Late || o.Due.IsZero() {
			continue
		}
		if o.Due.After(s.Clock) {
			if next.IsZero() || o.Due.Before(next) {
				next = o.Due
			}
			continue
		}
		o.Late = true
		s.dirty[o.ID] = struct{}{}
		v := o.ValueFen()
		changes = s.raise(changes, Alert{
			Kind: ShipLate, OrderID: o.ID, Seq: o.Seq, RaisedAt: o.Due,
			UnitsShort: o.Qty, ExposureFen: LateCompensationFen(v),
			Message: fmt.Sprintf("order %s (%d units, %s) was due to ship by %s and has not shipped: late compensation %s",
				o.ID, o.Qty, Yuan(v), o.Due.Format(time.RFC3339), Yuan(LateCompensationFen(v))),
		})
	}
	s.NextDue = next
	return changes
}

func (s *SKU) recount(seq uint64, e *ledger.Event, changes []Alert) []Alert {
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

func (s *SKU) sale(seq uint64, e *ledger.Event, changes []Alert) []Alert {
	qty := ledger.Value(e.Qty)
	o, seen := s.Orders[e.OrderID]
	if seen && !o.Early {
		return changes // the same order again: counted once
	}
	form := s.SalesForm
	if form == "" {
		form = ledger.Spot
	}
	due, _ := ledger.ShipDue(e.At, form, s.ShipWithinHours, s.ShipWithinDays)
	if !seen {
		o = &Order{ID: e.OrderID, State: OrderOpen}
		s.Orders[o.ID] = o
		s.fresh[o.ID] = struct{}{}
	}
	o.Qty, o.UnitPriceFen, o.SalesForm, o.SoldAt, o.Due, o.Seq = qty, e.UnitPriceFen, form, e.At.UTC(), due.UTC(), seq
	if due.IsZero() {
		o.Due = time.Time{}
	}
	s.dirty[o.ID] = struct{}{}
	s.Pace.add(e.At, qty)
	if e.LiveID != "" {
		s.LiveID = e.LiveID
	}
	s.Listed = max(0, s.Listed-qty) // the platform's figure never goes below zero
	early := o.Early
	o.Early = false
	switch {
	case early && o.State == OrderCancelled:
		// Sold and cancelled: the units went out of the listing and came back.
		s.Listed += qty
		s.retired = append(s.retired, o.ID)
	case early && o.State == OrderShipped:
		s.retired = append(s.retired, o.ID)
		if form == ledger.Spot {
			s.OnHand -= qty
			s.OnHandSet = true
		}
	default:
		if form == ledger.Spot {
			s.Committed += qty
		} else {
			s.PresaleCommitted += qty
		}
		s.open = append(s.open, o)
		s.count(o, 1)
		if !o.Due.IsZero() && (s.NextDue.IsZero() || o.Due.Before(s.NextDue)) {
			s.NextDue = o.Due
		}
		// A sale that arrives after its promise already passed is late at once.
		changes = s.advance(s.Clock, changes)
	}
	return changes
}

func (s *SKU) closeOrder(seq uint64, e *ledger.Event, to OrderState, changes []Alert) []Alert {
	o, seen := s.Orders[e.OrderID]
	if !seen {
		// The cancel or shipment came before its sale: remember it, so that
		// the sale, when it arrives, is closed at once.
		s.Orders[e.OrderID] = &Order{ID: e.OrderID, State: to, Early: true, Seq: seq, ClosedAt: e.At.UTC()}
		s.dirty[e.OrderID] = struct{}{}
		s.fresh[e.OrderID] = struct{}{}
		return changes
	}
	if o.State != OrderOpen {
		return changes // already shipped or cancelled
	}
	o.State, o.ClosedAt = to, e.At.UTC()
	s.dirty[o.ID] = struct{}{}
	s.retired = append(s.retired, o.ID)
	// open is sorted by Seq (unique per sale): find o in O(log n), and take
	// the oldest, the usual shipment, off the front without moving the rest.
	i, found := slices.BinarySearchFunc(s.open, o.Seq, func(x *Order, seq uint64) int { return cmp.Compare(x.Seq, seq) })
	if !found || s.open[i] != o {
		i = slices.Index(s.open, o) // not expected: the list would be out of order
	}
	if i >= 0 {
		s.count(o, -1)
		if i == 0 {
			s.open[0] = nil
			s.open = s.open[1:]
		} else {
			s.open = slices.Delete(s.open, i, i+1)
		}
	}
	if to == OrderCancelled {
		s.Listed += o.Qty
	}
	switch {
	case o.SalesForm == ledger.Spot && to == OrderShipped:
		s.Committed -= o.Qty
		s.OnHand -= o.Qty
		s.OnHandSet = true
	case o.SalesForm == ledger.Spot:
		s.Committed -= o.Qty
	default:
		s.PresaleCommitted -= o.Qty
	}
	return s.resolve(changes, alertKey(ShipLate, o.ID), seq, e.At)
}

// evaluate brings the SKU-level alerts (oversold, capacity_exceeded,
// phantom_stock) in line with the quantities after event seq.
func (s *SKU) evaluate(seq uint64, at time.Time, changes []Alert) []Alert {
	// oversold: spot orders past real stock, served oldest first.
	if short := s.Committed - s.OnHand; short > 0 {
		units, exposure := s.unserved(ledger.Spot, s.OnHand)
		changes = s.raise(changes, Alert{Kind: Oversold, Seq: seq, RaisedAt: at, UnitsShort: short, ExposureFen: exposure,
			Message: fmt.Sprintf("%d units sold as spot with %d on hand: %d orders (%d units) cannot ship, compensation %s",
				s.Committed, s.OnHand, units.orders, units.qty, Yuan(exposure))})
	} else {
		changes = s.resolve(changes, alertKey(Oversold, ""), seq, at)
	}
	// capacity_exceeded: presale orders past confirmed capacity.
	if short := s.PresaleCommitted - s.Capacity; short > 0 {
		units, exposure := s.unserved(ledger.Presale, s.Capacity)
		changes = s.raise(changes, Alert{Kind: CapacityExceeded, Seq: seq, RaisedAt: at, UnitsShort: short, ExposureFen: exposure,
			Message: fmt.Sprintf("%d presale units sold against %d confirmed by suppliers: %d orders (%d units) cannot ship, compensation %s",
				s.PresaleCommitted, s.Capacity, units.orders, units.qty, Yuan(exposure))})
	} else {
		changes = s.resolve(changes, alertKey(CapacityExceeded, ""), seq, at)
	}
	// phantom_stock: the platform offers units past the real limit.
	if units := s.phantomUnits(); units > 0 {
		per := UnshippedCompensationFen(s.PriceFen)
		changes = s.raise(changes, Alert{Kind: PhantomStock, Seq: seq, RaisedAt: at, UnitsShort: units, ExposureFen: units * per,
			// The message names only the alert's own figures: a sale that
			// moves listed and the real limit together leaves the alert as
			// it is, instead of publishing a new revision per sale.
			Message: fmt.Sprintf("the platform offers %d units more than the %s: selling them risks %s",
				units, s.limitName(), Yuan(units*per))})
	} else {
		changes = s.resolve(changes, alertKey(PhantomStock, ""), seq, at)
	}
	return changes
}

// RealLimit is what the SKU can really still sell: available while it sells
// as spot, capacity_left while it sells as presale.
func (s *SKU) RealLimit() int64 {
	if s.SalesForm == ledger.Presale {
		return s.Capacity - s.PresaleCommitted
	}
	return s.OnHand - s.Committed
}

func (s *SKU) limitName() string {
	if s.SalesForm == ledger.Presale {
		return "confirmed supplier capacity left"
	}
	return "available stock"
}

func (s *SKU) phantomUnits() int64 {
	if s.Status != StatusListed {
		return 0
	}
	return max(0, s.Listed-max(0, s.RealLimit()))
}

type unservedCount struct{ orders, qty int64 }

// unserved serves the open orders of one sales form oldest first from supply
// units; an order that does not fit whole is not served, and later smaller
// orders may still be. It returns the unserved orders and their unshipped
// compensation: the form's open totals less what was served. The walk ends
// when the supply is used up, so an oversold SKU with many open orders costs
// about as many steps as it has units, not orders.
func (s *SKU) unserved(form ledger.SalesForm, supply int64) (unservedCount, int64) {
	t := s.totals(form)
	n := unservedCount{orders: t.orders, qty: t.qty}
	exposure := t.compFen
	left := max(0, supply)
	for _, o := range s.open {
		if left == 0 {
			break
		}
		if o.SalesForm != form || o.Qty > left {
			continue
		}
		left -= o.Qty
		n.orders--
		n.qty -= o.Qty
		exposure -= UnshippedCompensationFen(o.ValueFen())
	}
	return n, exposure
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

func alertKey(kind AlertKind, orderID string) string {
	if orderID == "" {
		return string(kind)
	}
	return string(kind) + "/" + orderID
}
