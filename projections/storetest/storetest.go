// Package storetest is the contract every projections.Store implementation
// passes: one suite, run by each implementation's tests with Run. The suite
// builds real SKU states with the real fold (projections.NewSKU, SKU.Apply,
// SKU.Advance) from valid ledger events and commits them in batches, as the
// projector does.
//
// Event times in the suite are whole microseconds: the Postgres store keeps
// times as timestamptz, which has microsecond precision. Times are compared
// as instants (normalised to UTC), never by location.
package storetest

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"stockledger/ledger"
	"stockledger/projections"
)

// Bounds of the suite.
const (
	// readAll is the limit of reads meant to return everything.
	readAll = 1000
	// concurrentReaders is how many goroutines read while one commits.
	concurrentReaders = 4
	// concurrentBatches is how many batches the writer commits meanwhile.
	concurrentBatches = 25
)

// Run runs the contract suite against the stores open returns, one fresh
// empty store per subtest. Subtests run in parallel, so open must be safe to
// call concurrently; it may skip or fail t. Run closes each store when its
// subtest ends, before the cleanups open registered (cleanups run last in,
// first out), so that open may register one that drops the store's schema.
func Run(t *testing.T, open func(t *testing.T) projections.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s projections.Store)
	}{
		{"Checkpoint", testCheckpoint},
		{"CheckpointMoved", testCheckpointMoved},
		{"LoadSKURoundTrip", testLoadSKURoundTrip},
		{"LoadSKUsAtOnce", testLoadSKUsAtOnce},
		{"UnknownSKU", testUnknownSKU},
		{"SKUsOrderedPerShop", testSKUs},
		{"AlertsFilterAndOrder", testAlerts},
		{"AlertRaisedThenResolved", testAlertResolved},
		{"Outbox", testOutbox},
		{"ShopsAndSync", testShopsAndSync},
		{"DueSKUs", testDueSKUs},
		{"ConcurrentReads", testConcurrentReads},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			t.Cleanup(s.Close)
			tc.fn(t, s)
		})
	}
}

// t0 is the suite's epoch; events happen at offsets from it. Its fraction is
// whole microseconds (see the package comment).
func t0() time.Time { return time.Date(2025, 3, 1, 10, 0, 0, 123456000, time.UTC) }

func at(d time.Duration) time.Time { return t0().Add(d) }

// Event constructors. Every event is valid (checked when folded).

func event(typ ledger.Type, shop, sku string, when time.Time) ledger.Event {
	return ledger.Event{ID: uuid.NewString(), Type: typ, Shop: shop, SKU: sku, At: when}
}

func listSpot(shop, sku string, when time.Time, stock, priceFen int64) ledger.Event {
	e := event(ledger.Listing, shop, sku, when)
	e.Title, e.PriceFen, e.Stock = "spot "+sku, priceFen, ledger.Int64(stock)
	e.SalesForm, e.ShipWithinHours = ledger.Spot, 24
	return e
}

func listSpotHours(shop, sku string, when time.Time, stock, priceFen int64, hours int) ledger.Event {
	e := listSpot(shop, sku, when, stock, priceFen)
	e.ShipWithinHours = hours
	return e
}

func listPresale(shop, sku string, when time.Time, stock, priceFen int64, days int) ledger.Event {
	e := event(ledger.Listing, shop, sku, when)
	e.Title, e.PriceFen, e.Stock = "presale "+sku, priceFen, ledger.Int64(stock)
	e.SalesForm, e.ShipWithinDays = ledger.Presale, days
	return e
}

func sale(shop, sku, order string, when time.Time, qty, unitPriceFen int64) ledger.Event {
	e := event(ledger.Sale, shop, sku, when)
	e.OrderID, e.Qty, e.UnitPriceFen = order, ledger.Int64(qty), unitPriceFen
	return e
}

func closeOrder(typ ledger.Type, shop, sku, order string, when time.Time) ledger.Event {
	e := event(typ, shop, sku, when)
	e.OrderID = order
	return e
}

func stockSet(shop, sku string, when time.Time, stock int64) ledger.Event {
	e := event(ledger.StockSet, shop, sku, when)
	e.Stock = ledger.Int64(stock)
	return e
}

func recount(shop, sku string, when time.Time, counted int64) ledger.Event {
	e := event(ledger.Recount, shop, sku, when)
	e.Counted, e.CountedBy = ledger.Int64(counted), "storetest"
	return e
}

func restock(shop, sku string, when time.Time, qty int64) ledger.Event {
	e := event(ledger.Restock, shop, sku, when)
	e.Qty = ledger.Int64(qty)
	return e
}

func capacity(shop, sku, supplier string, when time.Time, qty int64, deliverBy time.Time) ledger.Event {
	e := event(ledger.CapacityConfirmed, shop, sku, when)
	e.Supplier, e.Qty, e.DeliverBy = supplier, ledger.Int64(qty), &deliverBy
	return e
}

// feed plays one projector: it numbers events with stream sequences, folds
// them into SKU states, and commits what changed in batches. It remembers
// every committed alert change and outbox entry the store should hold.
type feed struct {
	t         *testing.T
	store     projections.Store
	projector string
	seq       uint64 // last sequence handed out
	committed uint64 // the checkpoint
	skus      map[projections.SKUKey]*projections.SKU

	changed []*projections.SKU // SKUs of the pending batch, first change first
	alerts  []projections.Alert

	latest map[string]projections.Alert // committed alerts by id
	outbox []projections.OutboxAlert    // committed changes (ID unset)
}

func newFeed(t *testing.T, s projections.Store, projector string) *feed {
	return &feed{t: t, store: s, projector: projector, skus: make(map[projections.SKUKey]*projections.SKU),
		latest: make(map[string]projections.Alert)}
}

func (f *feed) sku(shop, sku string) *projections.SKU {
	k := projections.SKUKey{Shop: shop, SKU: sku}
	s, ok := f.skus[k]
	if !ok {
		s = projections.NewSKU(shop, sku)
		f.skus[k] = s
	}
	return s
}

func (f *feed) touch(s *projections.SKU) {
	if !slices.Contains(f.changed, s) {
		f.changed = append(f.changed, s)
	}
}

// apply folds events at the next sequences and returns their alert changes.
func (f *feed) apply(events ...ledger.Event) []projections.Alert {
	f.t.Helper()
	var changes []projections.Alert
	for i := range events {
		e := &events[i]
		if err := e.Validate(); err != nil {
			f.t.Fatalf("event %d (%s) is invalid: %v", i, e.Type, err)
		}
		s := f.sku(e.Shop, e.SKU)
		f.seq++
		c, err := s.Apply(f.seq, e)
		if err != nil {
			f.t.Fatalf("apply seq %d (%s %s/%s): %v", f.seq, e.Type, e.Shop, e.SKU, err)
		}
		f.touch(s)
		f.alerts = append(f.alerts, c...)
		changes = append(changes, c...)
	}
	return changes
}

// advance moves a SKU's clock, as the projector's sweep does.
func (f *feed) advance(shop, sku string, now time.Time) []projections.Alert {
	s := f.sku(shop, sku)
	c := s.Advance(now)
	f.touch(s)
	f.alerts = append(f.alerts, c...)
	return c
}

// batch returns the pending batch without committing it.
func (f *feed) batch() *projections.Batch {
	return &projections.Batch{Projector: f.projector, PrevSeq: f.committed, LastSeq: f.seq,
		SKUs: slices.Clone(f.changed), Alerts: slices.Clone(f.alerts)}
}

// commit commits the pending batch and fails the test if the store refuses.
func (f *feed) commit() {
	f.t.Helper()
	b := f.batch()
	if err := projections.Commit(f.t.Context(), f.store, b); err != nil {
		f.t.Fatalf("commit batch %d..%d: %v", b.PrevSeq, b.LastSeq, err)
	}
	f.committed = b.LastSeq
	for _, s := range f.changed {
		s.ClearDirty()
	}
	for _, a := range f.alerts {
		f.latest[a.ID] = a
		f.outbox = append(f.outbox, wantOutboxAlert(f.t, a, b.LastSeq))
	}
	f.changed, f.alerts = nil, nil
}

// wantAlerts returns the committed alerts a read of filter should answer.
func (f *feed) wantAlerts(filter projections.AlertFilter) []projections.Alert {
	want := []projections.Alert{}
	for _, a := range f.latest {
		if a.Shop == filter.Shop && (filter.State == "" || a.State == filter.State) {
			want = append(want, a)
		}
	}
	projections.SortAlerts(want)
	if filter.Limit > 0 && len(want) > filter.Limit {
		want = want[:filter.Limit]
	}
	return want
}

// Normalisation: times as UTC instants, so that equal instants compare equal
// whatever location a store returns them in.

func utc(t time.Time) time.Time { return t.UTC() }

func normView(v projections.View) projections.View {
	v.UpdatedAt = utc(v.UpdatedAt)
	return v
}

func normLine(l projections.Line) projections.Line {
	l.SoldAt, l.ShipBy, l.ClosedAt = utc(l.SoldAt), utc(l.ShipBy), utc(l.ClosedAt)
	l.Promise.At = utc(l.Promise.At)
	for i := range l.Early {
		l.Early[i].At, l.Early[i].ShipBy = utc(l.Early[i].At), utc(l.Early[i].ShipBy)
	}
	return l
}

func normAlert(a projections.Alert) projections.Alert {
	a.RaisedAt = utc(a.RaisedAt)
	if a.ResolvedAt != nil {
		r := utc(*a.ResolvedAt)
		a.ResolvedAt = &r
	}
	return a
}

func normAlerts(as []projections.Alert) []projections.Alert {
	out := make([]projections.Alert, len(as))
	for i, a := range as {
		out[i] = normAlert(a)
	}
	return out
}

func alertString(a projections.Alert) string {
	r := "nil"
	if a.ResolvedAt != nil {
		r = a.ResolvedAt.Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("{%s %s %s/%s order=%q %s raised=%s resolved=%s short=%d exposure=%d seq=%d updated=%d rev=%d %q}",
		a.ID, a.Kind, a.Shop, a.SKU, a.OrderID, a.State, a.RaisedAt.Format(time.RFC3339Nano), r,
		a.UnitsShort, a.ExposureFen, a.Seq, a.UpdatedSeq, a.Rev, a.Message)
}

// scalars returns the SKU's stored scalars and suppliers (its JSON form)
// with times in UTC.
func scalars(t *testing.T, s *projections.SKU) string {
	t.Helper()
	c := *s
	c.Clock, c.NextDue, c.UpdatedAt = utc(c.Clock), utc(c.NextDue), utc(c.UpdatedAt)
	c.Suppliers = make(map[string]projections.Supplier, len(s.Suppliers))
	for name, sup := range s.Suppliers {
		sup.DeliverBy = utc(sup.DeliverBy)
		c.Suppliers[name] = sup
	}
	b, err := json.Marshal(&c)
	if err != nil {
		t.Fatalf("encode sku %s/%s: %v", s.Shop, s.SKU, err)
	}
	return string(b)
}

// Checks, each in got, want form.

func checkView(t *testing.T, what string, got, want projections.View) {
	t.Helper()
	if g, w := normView(got), normView(want); !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func checkViews(t *testing.T, what string, got, want []projections.View) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: got nil, want a non-nil (possibly empty) list", what)
	}
	if len(got) != len(want) {
		t.Errorf("%s: got %d views %v, want %d %v", what, len(got), viewKeys(got), len(want), viewKeys(want))
		return
	}
	for i := range got {
		checkView(t, fmt.Sprintf("%s[%d]", what, i), got[i], want[i])
	}
}

func viewKeys(vs []projections.View) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Shop + "/" + v.SKU
	}
	return out
}

func checkAlerts(t *testing.T, what string, got, want []projections.Alert) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: got nil, want a non-nil (possibly empty) list", what)
	}
	g, w := normAlerts(got), normAlerts(want)
	if reflect.DeepEqual(g, w) {
		return
	}
	t.Errorf("%s: got %d alerts, want %d", what, len(g), len(w))
	for i := range max(len(g), len(w)) {
		gs, ws := "-", "-"
		if i < len(g) {
			gs = alertString(g[i])
		}
		if i < len(w) {
			ws = alertString(w[i])
		}
		if gs != ws {
			t.Errorf("%s[%d]:\n got %s\nwant %s", what, i, gs, ws)
		}
	}
}

// checkSameSKU compares a SKU loaded from the store with the state it was
// committed from: scalars, view, every order, the open orders in order and
// the open alerts by key.
func checkSameSKU(t *testing.T, s projections.Store, got, want *projections.SKU) {
	t.Helper()
	name := want.Shop + "/" + want.SKU
	if got == nil {
		t.Fatalf("LoadSKU(%s) = nil, want the committed state", name)
	}
	if g, w := scalars(t, got), scalars(t, want); g != w {
		t.Errorf("LoadSKU(%s) state:\n got %s\nwant %s", name, g, w)
	}
	checkView(t, "LoadSKU("+name+").View()", got.View(), want.View())

	// LoadSKU gives the lines the fold keeps in memory (open and early);
	// KnownLines gives every line, closed ones too.
	var live []string
	var keys []projections.LineKey
	for id, l := range want.Lines {
		if l.State() != projections.LineClosed {
			live = append(live, id)
		}
		keys = append(keys, projections.LineKey{Shop: want.Shop, SKU: want.SKU, OrderID: id})
	}
	slices.Sort(live)
	if g := slices.Sorted(maps.Keys(got.Lines)); !slices.Equal(g, live) {
		t.Errorf("LoadSKU(%s) lines: got %v, want the open and early ones %v", name, g, live)
	}
	for id, w := range want.Lines {
		if g, ok := got.Lines[id]; ok && !reflect.DeepEqual(normLine(*g), normLine(*w)) {
			t.Errorf("LoadSKU(%s) line %s:\n got %+v\nwant %+v", name, id, normLine(*g), normLine(*w))
		}
	}
	keys = append(keys, projections.LineKey{Shop: want.Shop, SKU: want.SKU, OrderID: "never-sold"},
		projections.LineKey{Shop: want.Shop, SKU: want.SKU + "-other", OrderID: "o1"})
	known, err := s.KnownLines(t.Context(), keys)
	if err != nil {
		t.Fatalf("KnownLines(%s): %v", name, err)
	}
	if len(known) != len(want.Lines) {
		t.Errorf("KnownLines(%s): %d lines, want %d (unknown keys left out)", name, len(known), len(want.Lines))
	}
	for id, w := range want.Lines {
		g, ok := known[projections.LineKey{Shop: want.Shop, SKU: want.SKU, OrderID: id}]
		if !ok || !reflect.DeepEqual(normLine(g), normLine(*w)) {
			t.Errorf("KnownLines(%s) line %s:\n got %+v (found %v)\nwant %+v", name, id, normLine(g), ok, normLine(*w))
		}
	}
	lineIDs := func(spot, presale []*projections.Line) []string {
		var out []string
		for _, l := range append(slices.Clone(spot), presale...) {
			out = append(out, l.OrderID)
		}
		return out
	}
	if g, w := lineIDs(got.OpenLines()), lineIDs(want.OpenLines()); !slices.Equal(g, w) {
		t.Errorf("LoadSKU(%s) open lines: got %v, want %v (in serving order)", name, g, w)
	}

	if g, w := slices.Sorted(maps.Keys(got.Alerts)), slices.Sorted(maps.Keys(want.Alerts)); !slices.Equal(g, w) {
		t.Errorf("LoadSKU(%s) open alert keys: got %v, want %v", name, g, w)
	}
	for key, w := range want.Alerts {
		if g, ok := got.Alerts[key]; ok && !reflect.DeepEqual(normAlert(*g), normAlert(*w)) {
			t.Errorf("LoadSKU(%s) alert %s:\n got %s\nwant %s", name, key, alertString(normAlert(*g)), alertString(normAlert(*w)))
		}
	}
}

func checkCheckpoint(t *testing.T, s projections.Store, projector string, want uint64) {
	t.Helper()
	got, err := s.Checkpoint(t.Context(), projector)
	if err != nil {
		t.Fatalf("Checkpoint(%q): %v", projector, err)
	}
	if got != want {
		t.Errorf("Checkpoint(%q) = %d, want %d", projector, got, want)
	}
}

func mustView(t *testing.T, s projections.Store, shop, sku string) projections.View {
	t.Helper()
	v, err := s.SKU(t.Context(), shop, sku)
	if err != nil {
		t.Fatalf("SKU(%s, %s): %v", shop, sku, err)
	}
	return v
}

func mustLoad(t *testing.T, s projections.Store, shop, sku string) *projections.SKU {
	t.Helper()
	got, err := s.LoadSKU(t.Context(), shop, sku)
	if err != nil {
		t.Fatalf("LoadSKU(%s, %s): %v", shop, sku, err)
	}
	return got
}

func mustAlerts(t *testing.T, s projections.Store, f projections.AlertFilter) []projections.Alert {
	t.Helper()
	got, err := s.Alerts(t.Context(), f)
	if err != nil {
		t.Fatalf("Alerts(%+v): %v", f, err)
	}
	return got
}

func mustPending(t *testing.T, s projections.Store, limit int) []projections.OutboxAlert {
	t.Helper()
	got, err := s.PendingAlerts(t.Context(), limit)
	if err != nil {
		t.Fatalf("PendingAlerts(%d): %v", limit, err)
	}
	return got
}

func mustDue(t *testing.T, s projections.Store, now time.Time, limit int) []projections.SKUKey {
	t.Helper()
	got, err := s.DueSKUs(t.Context(), now, limit)
	if err != nil {
		t.Fatalf("DueSKUs(%s, %d): %v", now.Format(time.RFC3339Nano), limit, err)
	}
	return got
}

// The tests.

func testCheckpoint(t *testing.T, s projections.Store) {
	checkCheckpoint(t, s, "p1", 0)

	f := newFeed(t, s, "p1")
	f.apply(listSpot("shop", "a", at(0), 10, 1000), sale("shop", "a", "o1", at(time.Minute), 2, 1000))
	f.commit()
	checkCheckpoint(t, s, "p1", 2)

	f.apply(restock("shop", "a", at(2*time.Minute), 5))
	f.commit()
	checkCheckpoint(t, s, "p1", 3)

	// A sweep batch: time passes, no event; the checkpoint stays.
	f.advance("shop", "a", at(25*time.Hour))
	if b := f.batch(); b.PrevSeq != b.LastSeq || len(b.Alerts) == 0 {
		t.Fatalf("sweep batch %d..%d with %d alert changes: want an equal PrevSeq and LastSeq and a ship_late alert", b.PrevSeq, b.LastSeq, len(b.Alerts))
	}
	f.commit()
	checkCheckpoint(t, s, "p1", 3)
	if got := mustView(t, s, "shop", "a"); got.LateOrders != 1 {
		t.Errorf("after the sweep: late_orders = %d, want 1", got.LateOrders)
	}

	// Projectors are independent.
	checkCheckpoint(t, s, "p2", 0)
	g := newFeed(t, s, "p2")
	g.apply(listSpot("shop", "b", at(0), 1, 1000))
	g.commit()
	checkCheckpoint(t, s, "p2", 1)
	checkCheckpoint(t, s, "p1", 3)
}

func testCheckpointMoved(t *testing.T, s projections.Store) {
	ctx := t.Context()
	f := newFeed(t, s, "p")
	f.apply(listSpot("shop", "a", at(0), 10, 1000),
		sale("shop", "a", "o1", at(time.Minute), 4, 1000),
		recount("shop", "a", at(2*time.Minute), 3))
	f.commit()

	wantView := mustView(t, s, "shop", "a")
	wantAlerts := mustAlerts(t, s, projections.AlertFilter{Shop: "shop"})
	wantPending := mustPending(t, s, readAll)
	if len(wantAlerts) == 0 {
		t.Fatal("setup: the first batch raised no alert")
	}
	committed := scalars(t, mustLoad(t, s, "shop", "a"))

	// More changes: the SKU sells more, a new SKU appears, alerts change.
	f.apply(sale("shop", "a", "o2", at(3*time.Minute), 5, 1000),
		listSpot("shop", "new", at(4*time.Minute), 3, 500),
		sale("shop", "new", "o3", at(5*time.Minute), 9, 500))
	for _, prev := range []uint64{1, 0, f.committed + 1} {
		b := f.batch()
		b.PrevSeq = prev
		err := projections.Commit(ctx, s, b)
		if !errors.Is(err, projections.ErrCheckpointMoved) {
			t.Errorf("Commit with PrevSeq %d on checkpoint %d: got %v, want ErrCheckpointMoved", prev, f.committed, err)
		}
	}
	// A projector with no checkpoint is at 0.
	b := f.batch()
	b.Projector, b.PrevSeq = "fresh", 2
	if err := projections.Commit(ctx, s, b); !errors.Is(err, projections.ErrCheckpointMoved) {
		t.Errorf("Commit of a new projector with PrevSeq 2: got %v, want ErrCheckpointMoved", err)
	}

	// Nothing was written.
	checkCheckpoint(t, s, "p", f.committed)
	checkCheckpoint(t, s, "fresh", 0)
	checkView(t, "SKU(shop, a) after refused commits", mustView(t, s, "shop", "a"), wantView)
	if got := scalars(t, mustLoad(t, s, "shop", "a")); got != committed {
		t.Errorf("LoadSKU(shop, a) after refused commits:\n got %s\nwant %s", got, committed)
	}
	if _, err := s.SKU(ctx, "shop", "new"); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("SKU(shop, new) after refused commits: got %v, want ErrNotFound", err)
	}
	if got := mustLoad(t, s, "shop", "new"); got != nil {
		t.Errorf("LoadSKU(shop, new) after refused commits = %+v, want nil", got.View())
	}
	checkAlerts(t, "Alerts after refused commits", mustAlerts(t, s, projections.AlertFilter{Shop: "shop"}), wantAlerts)
	if got := mustPending(t, s, readAll); len(got) != len(wantPending) {
		t.Errorf("PendingAlerts after refused commits: got %d entries, want %d", len(got), len(wantPending))
	}
	if got := mustView(t, s, "shop", "a"); got.OpenOrders != 1 {
		t.Errorf("open_orders after refused commits = %d, want 1", got.OpenOrders)
	}

	// The right PrevSeq still commits.
	f.commit()
	checkCheckpoint(t, s, "p", f.seq)
}

// richFeed commits two SKUs with every kind of order and most kinds of
// alert: a spot SKU with open, shipped, late and early-cancelled orders,
// oversold, phantom_stock, recount_mismatch and ship_late; and a presale SKU
// with two suppliers and capacity_exceeded.
func richFeed(t *testing.T, s projections.Store) *feed {
	f := newFeed(t, s, "p")
	beijing := time.FixedZone("CST", 8*60*60)
	f.apply(
		listSpot("shop", "spot", at(0), 10, 1000),
		sale("shop", "spot", "o1", at(time.Minute), 4, 1000),
		sale("shop", "spot", "o2", at(2*time.Minute), 5, 1000),
		closeOrder(ledger.Cancel, "shop", "spot", "o3", at(3*time.Minute)), // before its sale
		recount("shop", "spot", at(4*time.Minute), 6),
		closeOrder(ledger.Shipment, "shop", "spot", "o1", at(5*time.Minute)),
		// An event stamped in another zone: the same instant must come back.
		sale("shop", "spot", "o4", at(6*time.Minute).In(beijing), 1, 1200),
		stockSet("shop", "spot", at(7*time.Minute), 5), // listed past the real limit

		listPresale("shop", "pre", at(0), 50, 2000, 10),
		capacity("shop", "pre", "supA", at(time.Minute), 10, at(5*24*time.Hour)),
		capacity("shop", "pre", "supB", at(2*time.Minute), 5, at(6*24*time.Hour)),
		sale("shop", "pre", "p1", at(3*time.Minute), 12, 2000),
		sale("shop", "pre", "p2", at(4*time.Minute), 6, 2000),
	)
	f.commit()
	// The sweep: o2 (due at 24h02m) is late, o4 (due at 24h06m) not yet.
	f.advance("shop", "spot", at(24*time.Hour+3*time.Minute))
	f.commit()

	spot := f.sku("shop", "spot")
	for _, key := range []string{"oversold", "phantom_stock", "recount_mismatch", "ship_late/o2"} {
		if _, ok := spot.Alerts[key]; !ok {
			t.Fatalf("setup: spot SKU has no open %s alert; open: %v", key, slices.Sorted(maps.Keys(spot.Alerts)))
		}
	}
	if _, ok := f.sku("shop", "pre").Alerts["capacity_exceeded"]; !ok {
		t.Fatal("setup: presale SKU has no open capacity_exceeded alert")
	}
	return f
}

func testLoadSKURoundTrip(t *testing.T, s projections.Store) {
	f := richFeed(t, s)
	for _, name := range []string{"spot", "pre"} {
		want := f.sku("shop", name)
		got := mustLoad(t, s, "shop", name)
		checkSameSKU(t, s, got, want)
		checkView(t, "SKU(shop, "+name+")", mustView(t, s, "shop", name), want.View())
		if t.Failed() {
			return
		}
	}

	// The loaded state folds on exactly as the state it was saved from.
	loaded := map[string]*projections.SKU{"spot": mustLoad(t, s, "shop", "spot"), "pre": mustLoad(t, s, "shop", "pre")}
	steps := []struct {
		sku  string
		next func(s *projections.SKU, seq uint64) []projections.Alert
	}{
		// o1 shipped before the commit: the loaded state holds it no more,
		// and recalls it from the store to count its re-sent sale once.
		{"spot", recallThenApply(t, s, sale("shop", "spot", "o1", at(24*time.Hour+4*time.Minute), 4, 1000))},
		{"spot", applyFn(restock("shop", "spot", at(24*time.Hour+5*time.Minute), 3))},
		{"spot", func(s *projections.SKU, _ uint64) []projections.Alert { return s.Advance(at(48 * time.Hour)) }},
		{"spot", applyFn(closeOrder(ledger.Shipment, "shop", "spot", "o2", at(48*time.Hour+time.Minute)))},
		{"spot", applyFn(sale("shop", "spot", "o3", at(48*time.Hour+2*time.Minute), 2, 1000))}, // the early cancel's sale
		{"pre", applyFn(capacity("shop", "pre", "supA", at(time.Hour), 20, at(5*24*time.Hour)))},
		{"pre", applyFn(closeOrder(ledger.Cancel, "shop", "pre", "p1", at(2*time.Hour)))},
	}
	seq := f.seq
	for i, step := range steps {
		seq++
		want := step.next(f.sku("shop", step.sku), seq)
		got := step.next(loaded[step.sku], seq)
		checkAlerts(t, fmt.Sprintf("step %d on the loaded %s: alert changes", i, step.sku), orEmpty(got), orEmpty(want))
		checkView(t, fmt.Sprintf("step %d on the loaded %s: view", i, step.sku), loaded[step.sku].View(), f.sku("shop", step.sku).View())
	}
}

// testLoadSKUsAtOnce: LoadSKUs gives each known SKU exactly as LoadSKU
// gives it (lines and alerts of one SKU never land on another), leaves
// unknown ones out, and takes repeated keys.
func testLoadSKUsAtOnce(t *testing.T, s projections.Store) {
	f := richFeed(t, s)
	keys := []projections.SKUKey{
		{Shop: "shop", SKU: "spot"}, {Shop: "shop", SKU: "nope"}, {Shop: "shop", SKU: "pre"},
		{Shop: "other", SKU: "spot"}, {Shop: "shop", SKU: "spot"},
	}
	got, err := s.LoadSKUs(t.Context(), keys)
	if err != nil {
		t.Fatalf("LoadSKUs: %v", err)
	}
	if g := len(got); g != 2 {
		t.Errorf("LoadSKUs of %v: %d SKUs, want the 2 the store holds", keys, g)
	}
	for _, name := range []string{"spot", "pre"} {
		checkSameSKU(t, s, got[projections.SKUKey{Shop: "shop", SKU: name}], f.sku("shop", name))
	}
	if none, err := s.LoadSKUs(t.Context(), nil); err != nil || len(none) != 0 {
		t.Errorf("LoadSKUs(nil) = %v, %v; want empty, nil", none, err)
	}
}

func applyFn(e ledger.Event) func(s *projections.SKU, seq uint64) []projections.Alert {
	return func(s *projections.SKU, seq uint64) []projections.Alert {
		changes, err := s.Apply(seq, &e)
		if err != nil {
			panic(fmt.Sprintf("storetest: apply %s: %v", e.Type, err)) // the suite's own events are valid
		}
		return changes
	}
}

// recallThenApply is applyFn with the projector's recall first: when the
// SKU does not hold the line or the restock key e names, the store is
// asked for it.
func recallThenApply(t *testing.T, st projections.Store, e ledger.Event) func(s *projections.SKU, seq uint64) []projections.Alert {
	return func(s *projections.SKU, seq uint64) []projections.Alert {
		if err := projections.RecallFor(t.Context(), st, s, &e); err != nil {
			t.Fatalf("recall for %s %s: %v", e.Type, e.Key(), err)
		}
		return applyFn(e)(s, seq)
	}
}

func orEmpty(as []projections.Alert) []projections.Alert {
	if as == nil {
		return []projections.Alert{}
	}
	return as
}

func testUnknownSKU(t *testing.T, s projections.Store) {
	ctx := t.Context()
	check := func(when string) {
		t.Helper()
		if got, err := s.LoadSKU(ctx, "shop", "nope"); got != nil || err != nil {
			t.Errorf("%s: LoadSKU(shop, nope) = %v, %v; want nil, nil", when, got, err)
		}
		if _, err := s.SKU(ctx, "shop", "nope"); !errors.Is(err, projections.ErrNotFound) {
			t.Errorf("%s: SKU(shop, nope): got %v, want ErrNotFound", when, err)
		}
		if _, err := s.SKU(ctx, "other", "a"); !errors.Is(err, projections.ErrNotFound) {
			t.Errorf("%s: SKU(other, a): got %v, want ErrNotFound", when, err)
		}
		got, err := s.SKUs(ctx, "nobody")
		if err != nil {
			t.Fatalf("SKUs(nobody): %v", err)
		}
		checkViews(t, when+": SKUs(nobody)", got, nil)
		checkAlerts(t, when+": Alerts(nobody)", mustAlerts(t, s, projections.AlertFilter{Shop: "nobody"}), []projections.Alert{})
		if got := mustPending(t, s, 0); len(got) != 0 {
			t.Errorf("%s: PendingAlerts(0) = %d entries, want 0", when, len(got))
		}
	}
	check("empty store")
	f := newFeed(t, s, "p")
	f.apply(listSpot("shop", "a", at(0), 1, 100))
	f.commit()
	check("after a commit")
}

func testSKUs(t *testing.T, s projections.Store) {
	f := newFeed(t, s, "p")
	// Mixed case, '-' and '_': the order is byte order, as Go compares strings.
	namesA := []string{"b-2", "A_1", "a_1", "Z9", "_x", "-y", "a"}
	for i, name := range namesA {
		f.apply(listSpot("shop-a", name, at(time.Duration(i)*time.Minute), int64(i+1), 1000))
		if i == 3 {
			f.commit() // two batches
		}
	}
	f.apply(listSpot("shop-b", "a_1", at(0), 7, 1000), listSpot("shop-b", "m", at(0), 8, 1000))
	f.commit()
	// An update of a committed SKU replaces its view.
	f.apply(sale("shop-a", "a", "o1", at(time.Hour), 1, 1000))
	f.commit()

	want := func(shop string, names []string) []projections.View {
		names = slices.Sorted(slices.Values(names))
		out := make([]projections.View, len(names))
		for i, n := range names {
			out[i] = f.sku(shop, n).View()
		}
		return out
	}
	for _, tc := range []struct {
		shop  string
		names []string
	}{
		{"shop-a", namesA},
		{"shop-b", []string{"a_1", "m"}},
	} {
		got, err := s.SKUs(t.Context(), tc.shop)
		if err != nil {
			t.Fatalf("SKUs(%s): %v", tc.shop, err)
		}
		checkViews(t, "SKUs("+tc.shop+")", got, want(tc.shop, tc.names))
	}
	if got := mustView(t, s, "shop-a", "a"); got.Committed != 1 || got.OpenOrders != 1 {
		t.Errorf("SKU(shop-a, a) after a sale: committed %d, open_orders %d; want 1, 1", got.Committed, got.OpenOrders)
	}
}

func testAlerts(t *testing.T, s projections.Store) {
	f := newFeed(t, s, "p")
	same := at(time.Hour) // equal raised_at: ordered by id
	f.apply(
		listSpot("shop", "p1", at(0), 10, 1000), recount("shop", "p1", same, 0), // phantom 10 × 500
		listSpot("shop", "p2", at(0), 5, 10000), recount("shop", "p2", same, 2), // phantom 3 × 3000
		listSpot("shop", "p3", at(0), 4, 1000), recount("shop", "p3", at(2*time.Hour), 3), // phantom 1 × 500
		listSpot("other", "p1", at(0), 10, 1000), recount("other", "p1", same, 0),
	)
	f.commit()
	// p3's alerts resolve: restocked to 4 and counted 4.
	f.apply(restock("shop", "p3", at(3*time.Hour), 1), recount("shop", "p3", at(4*time.Hour), 4))
	f.commit()

	for _, filter := range []projections.AlertFilter{
		{Shop: "shop"},
		{Shop: "shop", State: projections.AlertOpen},
		{Shop: "shop", State: projections.AlertResolved},
		{Shop: "shop", Limit: 2},
		{Shop: "shop", State: projections.AlertOpen, Limit: 1},
		{Shop: "other"},
		{Shop: "other", State: projections.AlertResolved},
	} {
		got := mustAlerts(t, s, filter)
		checkAlerts(t, fmt.Sprintf("Alerts(%+v)", filter), got, f.wantAlerts(filter))
		for i, a := range got {
			if a.Shop != filter.Shop || (filter.State != "" && a.State != filter.State) {
				t.Errorf("Alerts(%+v)[%d] is %s of shop %s: outside the filter", filter, i, a.State, a.Shop)
			}
			if i > 0 && a.ExposureFen > got[i-1].ExposureFen {
				t.Errorf("Alerts(%+v)[%d] exposure %d after %d: want largest first", filter, i, a.ExposureFen, got[i-1].ExposureFen)
			}
		}
	}
	open := mustAlerts(t, s, projections.AlertFilter{Shop: "shop", State: projections.AlertOpen})
	if len(open) < 4 || open[0].ExposureFen != 9000 || open[1].ExposureFen != 5000 {
		t.Errorf("open alerts of shop: got %d, first exposures %v; want p2's 9000 then p1's 5000 first", len(open), exposures(open))
	}
	if n := len(mustAlerts(t, s, projections.AlertFilter{Shop: "shop", State: projections.AlertResolved})); n != 2 {
		t.Errorf("resolved alerts of shop: got %d, want 2 (p3's phantom_stock and recount_mismatch)", n)
	}
}

func exposures(as []projections.Alert) []int64 {
	out := make([]int64, len(as))
	for i, a := range as {
		out[i] = a.ExposureFen
	}
	return out
}

func testAlertResolved(t *testing.T, s projections.Store) {
	f := newFeed(t, s, "p")
	f.apply(listSpot("shop", "a", at(0), 10, 1000))
	raised := f.apply(recount("shop", "a", at(time.Hour), 12)) // 2 over: no phantom stock
	f.commit()
	if len(raised) != 1 || raised[0].Kind != projections.RecountMismatch {
		t.Fatalf("setup: recount raised %v, want one recount_mismatch", raised)
	}
	id := raised[0].ID
	check := func(when string, wantState projections.AlertState, wantRev int) projections.Alert {
		t.Helper()
		all := mustAlerts(t, s, projections.AlertFilter{Shop: "shop"})
		checkAlerts(t, when+": Alerts", all, f.wantAlerts(projections.AlertFilter{Shop: "shop"}))
		i := slices.IndexFunc(all, func(a projections.Alert) bool { return a.ID == id })
		if i < 0 {
			t.Fatalf("%s: alert %s missing", when, id)
		}
		if all[i].State != wantState || all[i].Rev != wantRev {
			t.Errorf("%s: alert is %s rev %d, want %s rev %d", when, all[i].State, all[i].Rev, wantState, wantRev)
		}
		return all[i]
	}
	check("raised", projections.AlertOpen, 1)

	// Counted again, differently: the open alert is updated in place.
	f.apply(recount("shop", "a", at(2*time.Hour), 11))
	f.commit()
	check("updated", projections.AlertOpen, 2)

	// Counted as the book says: resolved.
	resolvedAt := at(3 * time.Hour)
	f.apply(recount("shop", "a", resolvedAt, 11))
	f.commit()
	a := check("resolved", projections.AlertResolved, 3)
	if a.ResolvedAt == nil || !a.ResolvedAt.Equal(resolvedAt) {
		t.Errorf("resolved_at = %v, want %s", a.ResolvedAt, resolvedAt.Format(time.RFC3339Nano))
	}
	if !a.RaisedAt.Equal(at(time.Hour)) || a.Seq != 2 || a.UpdatedSeq != f.seq {
		t.Errorf("resolved alert raised_at %s seq %d updated_seq %d; want %s, 2, %d",
			a.RaisedAt.Format(time.RFC3339Nano), a.Seq, a.UpdatedSeq, at(time.Hour).Format(time.RFC3339Nano), f.seq)
	}
	if got := mustAlerts(t, s, projections.AlertFilter{Shop: "shop", State: projections.AlertOpen}); len(got) != 0 {
		t.Errorf("open alerts after the resolve: got %d, want 0", len(got))
	}
	got := mustLoad(t, s, "shop", "a")
	checkSameSKU(t, s, got, f.sku("shop", "a"))
	if len(got.Alerts) != 0 {
		t.Errorf("LoadSKU after the resolve: %d open alerts, want 0", len(got.Alerts))
	}
	if v := mustView(t, s, "shop", "a"); v.OpenAlerts != 0 {
		t.Errorf("open_alerts after the resolve = %d, want 0", v.OpenAlerts)
	}
}

func testOutbox(t *testing.T, s projections.Store) {
	ctx := t.Context()
	if got := mustPending(t, s, readAll); len(got) != 0 {
		t.Fatalf("PendingAlerts of an empty store: %d entries, want 0", len(got))
	}
	f := newFeed(t, s, "p")
	f.apply(listSpot("shop", "a", at(0), 10, 1000), recount("shop", "a", at(time.Minute), 0))
	f.commit()
	// Raised and resolved within one batch: both changes are published, the
	// alert reads resolved.
	f.apply(listSpot("shop", "b", at(0), 10, 1000),
		recount("shop", "b", at(time.Minute), 9),
		recount("shop", "b", at(2*time.Minute), 9),
		restock("shop", "a", at(3*time.Minute), 4))
	f.commit()

	all := mustPending(t, s, readAll)
	checkOutbox(t, "PendingAlerts", all, f.outbox)
	if len(all) < 5 {
		t.Fatalf("setup: %d outbox entries, want at least 5", len(all))
	}
	checkOutbox(t, "PendingAlerts(2)", mustPending(t, s, 2), f.outbox[:2])

	if err := s.DeletePendingAlerts(ctx, all[1].ID); err != nil {
		t.Fatalf("DeletePendingAlerts(%d): %v", all[1].ID, err)
	}
	rest := mustPending(t, s, readAll)
	checkOutbox(t, "PendingAlerts after deleting two", rest, f.outbox[2:])
	if len(rest) > 0 && rest[0].ID != all[2].ID {
		t.Errorf("first entry after deleting two: id %d, want %d", rest[0].ID, all[2].ID)
	}

	last := all[len(all)-1].ID
	if err := s.DeletePendingAlerts(ctx, last); err != nil {
		t.Fatalf("DeletePendingAlerts(%d): %v", last, err)
	}
	if got := mustPending(t, s, readAll); len(got) != 0 {
		t.Errorf("PendingAlerts after deleting all: %d entries, want 0", len(got))
	}
	if err := s.DeletePendingAlerts(ctx, last); err != nil {
		t.Errorf("DeletePendingAlerts(%d) on an empty outbox: %v", last, err)
	}

	// New changes get new ids.
	before := len(f.outbox)
	f.apply(restock("shop", "a", at(4*time.Minute), 10))
	f.commit()
	got := mustPending(t, s, readAll)
	checkOutbox(t, "PendingAlerts after a new batch", got, f.outbox[before:])
	if len(got) == 0 || got[0].ID <= last {
		t.Errorf("new outbox entries %v: want ids after %d", got, last)
	}
	checkAlerts(t, "Alerts", mustAlerts(t, s, projections.AlertFilter{Shop: "shop"}), f.wantAlerts(projections.AlertFilter{Shop: "shop"}))
}

// wantOutboxAlert is the outbox entry of change a committed in a batch that
// left checkpoint (ID unset): its message is json.Marshal(a), byte for byte.
func wantOutboxAlert(t *testing.T, a projections.Alert, checkpoint uint64) projections.OutboxAlert {
	t.Helper()
	data, err := json.Marshal(a)
	if err != nil {
		t.Fatalf("encode alert %s: %v", a.ID, err)
	}
	return projections.OutboxAlert{AlertID: a.ID, Rev: a.Rev, Shop: a.Shop, Kind: a.Kind, Data: data, Checkpoint: checkpoint}
}

// checkOutbox compares outbox entries with the changes wanted, in order,
// with increasing ids. The messages must be the bytes json.Marshal gave the
// changes: they are published as they are.
func checkOutbox(t *testing.T, when string, got, want []projections.OutboxAlert) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d outbox entries, want %d", when, len(got), len(want))
	}
	for i := range got {
		if i > 0 && got[i].ID <= got[i-1].ID {
			t.Errorf("%s[%d]: id %d after %d, want increasing", when, i, got[i].ID, got[i-1].ID)
		}
		g, w := got[i], want[i]
		g.ID = 0
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s[%d]:\n got %+v (%s)\nwant %+v (%s)", when, i, g, g.Data, w, w.Data)
		}
	}
}

func testDueSKUs(t *testing.T, s projections.Store) {
	f := newFeed(t, s, "p")
	f.apply(
		listSpotHours("shop", "early", at(0), 10, 1000, 24), sale("shop", "early", "o1", at(time.Minute), 1, 1000),
		listSpotHours("shop", "later", at(0), 10, 1000, 72), sale("shop", "later", "o2", at(time.Minute), 1, 1000),
		listSpot("shop", "none", at(0), 10, 1000),
		listSpot("shop", "shipped", at(0), 10, 1000), sale("shop", "shipped", "o3", at(time.Minute), 1, 1000),
		closeOrder(ledger.Shipment, "shop", "shipped", "o3", at(2*time.Minute)),
		listSpot("other", "early", at(0), 10, 1000), sale("other", "early", "o4", at(time.Minute), 1, 1000),
	)
	f.commit()
	early, later := projections.SKUKey{Shop: "shop", SKU: "early"}, projections.SKUKey{Shop: "shop", SKU: "later"}
	other := projections.SKUKey{Shop: "other", SKU: "early"}
	shipped := projections.SKUKey{Shop: "shop", SKU: "shipped"}

	// sorted orders keys and leaves out shop/shipped: its only order shipped,
	// but SKU.NextDue is a lower bound that only a sweep (Advance) moves, so
	// a store may report it until then.
	sorted := func(ks []projections.SKUKey) []projections.SKUKey {
		ks = slices.DeleteFunc(slices.Clone(ks), func(k projections.SKUKey) bool { return k == shipped })
		slices.SortFunc(ks, func(a, b projections.SKUKey) int {
			return cmp.Or(strings.Compare(a.Shop, b.Shop), strings.Compare(a.SKU, b.SKU))
		})
		return ks
	}
	for _, tc := range []struct {
		now  time.Time
		want []projections.SKUKey
	}{
		{at(time.Hour), nil},
		{at(24*time.Hour + time.Minute - time.Microsecond), nil},
		{at(24*time.Hour + time.Minute), []projections.SKUKey{other, early}}, // due exactly now
		{at(25 * time.Hour), []projections.SKUKey{other, early}},
		{at(73 * time.Hour), []projections.SKUKey{other, early, later}},
	} {
		got := mustDue(t, s, tc.now, readAll)
		if g, w := sorted(got), sorted(tc.want); !slices.Equal(g, w) {
			t.Errorf("DueSKUs(t0+%s) = %v, want %v", tc.now.Sub(t0()), g, w)
		}
	}
	if got := mustDue(t, s, at(73*time.Hour), 2); len(got) != 2 {
		t.Errorf("DueSKUs(t0+73h, limit 2) = %v, want 2 keys", got)
	}

	// Once a sweep advanced them, neither the late order's SKU nor the
	// shipped one is due.
	f.advance("shop", "early", at(25*time.Hour))
	f.advance("shop", "shipped", at(25*time.Hour))
	f.commit()
	if got, want := mustDue(t, s, at(25*time.Hour), readAll), []projections.SKUKey{other}; !slices.Equal(got, want) {
		t.Errorf("DueSKUs(t0+25h) after the sweep = %v, want %v", got, want)
	}
}

// testConcurrentReads commits batches while readers read; every state a
// reader sees must be one that was committed whole (run with -race).
func testConcurrentReads(t *testing.T, s projections.Store) {
	skus := []string{"c1", "c2", "c3"}
	seen := &committedViews{views: make(map[projections.SKUKey]map[uint64]projections.View)}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := range concurrentReaders {
		wg.Go(func() {
			for i := 0; ; i++ {
				if i > 0 {
					select {
					case <-done:
						return
					default:
					}
				}
				if !readOnce(t, s, seen, r, skus[(r+i)%len(skus)]) {
					return
				}
			}
		})
	}

	f := newFeed(t, s, "p")
	commit := func() {
		seen.record(f.batch())
		f.commit()
	}
	for i, sku := range skus {
		f.apply(listSpot("c", sku, at(time.Duration(i)*time.Second), 20, 1000))
	}
	commit()
	for i := range concurrentBatches {
		sku := skus[i%len(skus)]
		when := at(time.Duration(i+1) * time.Minute)
		f.apply(sale("c", sku, fmt.Sprintf("o%d", i), when, int64(i%4+1), 1000))
		if i%5 == 4 {
			f.apply(restock("c", sku, when, 2), recount("c", skus[(i+1)%len(skus)], when, int64(i)))
		}
		commit()
	}
	close(done)
	wg.Wait()

	checkCheckpoint(t, s, "p", f.seq)
	for _, sku := range skus {
		checkSameSKU(t, s, mustLoad(t, s, "c", sku), f.sku("c", sku))
	}
}

// committedViews records every view a test committed, by SKU and last_seq,
// so that readers can tell a committed view from one never committed.
type committedViews struct {
	mu    sync.Mutex
	views map[projections.SKUKey]map[uint64]projections.View
	// last is each reader's last checkpoint read.
	last map[int]uint64
}

func (c *committedViews) record(b *projections.Batch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, sk := range b.SKUs {
		k := projections.SKUKey{Shop: sk.Shop, SKU: sk.SKU}
		if c.views[k] == nil {
			c.views[k] = make(map[uint64]projections.View)
		}
		c.views[k][sk.LastSeq] = normView(sk.View())
	}
}

// check reports whether v is a view the test committed; if not it fails t.
func (c *committedViews) check(t *testing.T, what string, v projections.View) bool {
	c.mu.Lock()
	w, ok := c.views[projections.SKUKey{Shop: v.Shop, SKU: v.SKU}][v.LastSeq]
	c.mu.Unlock()
	if !ok || !reflect.DeepEqual(normView(v), w) {
		t.Errorf("%s: read a view never committed: %+v", what, v)
		return false
	}
	return true
}

// checkpointMoves records reader r's checkpoint read and reports whether it
// did not go back.
func (c *committedViews) checkpointMoves(t *testing.T, r int, cp uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = make(map[int]uint64)
	}
	if cp < c.last[r] {
		t.Errorf("reader %d: checkpoint went back from %d to %d", r, c.last[r], cp)
		return false
	}
	c.last[r] = cp
	return true
}

// readOnce is one round of reader r: every read a store serves while a
// projector commits, each checked; false when one failed.
func readOnce(t *testing.T, s projections.Store, seen *committedViews, r int, sku string) bool {
	ctx := t.Context()
	cp, err := s.Checkpoint(ctx, "p")
	if err != nil {
		t.Errorf("reader %d: Checkpoint: %v", r, err)
		return false
	}
	if !seen.checkpointMoves(t, r, cp) {
		return false
	}
	if v, err := s.SKU(ctx, "c", sku); err == nil {
		if !seen.check(t, fmt.Sprintf("reader %d: SKU", r), v) {
			return false
		}
	} else if !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("reader %d: SKU(c, %s): %v", r, sku, err)
		return false
	}
	loaded, err := s.LoadSKU(ctx, "c", sku)
	if err != nil {
		t.Errorf("reader %d: LoadSKU(c, %s): %v", r, sku, err)
		return false
	}
	if loaded != nil && !seen.check(t, fmt.Sprintf("reader %d: LoadSKU().View()", r), loaded.View()) {
		return false
	}
	vs, err := s.SKUs(ctx, "c")
	if err != nil {
		t.Errorf("reader %d: SKUs: %v", r, err)
		return false
	}
	for _, v := range vs {
		if !seen.check(t, fmt.Sprintf("reader %d: SKUs", r), v) {
			return false
		}
	}
	if _, err := s.Alerts(ctx, projections.AlertFilter{Shop: "c"}); err != nil {
		t.Errorf("reader %d: Alerts: %v", r, err)
		return false
	}
	if _, err := s.PendingAlerts(ctx, 10); err != nil {
		t.Errorf("reader %d: PendingAlerts: %v", r, err)
		return false
	}
	if _, err := s.DueSKUs(ctx, at(100*time.Hour), 10); err != nil {
		t.Errorf("reader %d: DueSKUs: %v", r, err)
		return false
	}
	return true
}

// testShopsAndSync commits a shop's health (with its fulfilment_risk alert)
// and sync instructions: LoadShop gives the health back, ShopHealth the
// totals with the lines due, and the sync outbox keeps the instructions in
// order until deleted.
func testShopsAndSync(t *testing.T, s projections.Store) {
	ctx := t.Context()
	f := newFeed(t, s, "p")
	f.apply(listSpot("h", "a", at(0), 10, 1000), listSpot("h", "b", at(0), 1, 1000))
	for i := range 19 {
		f.apply(sale("h", "a", fmt.Sprintf("o%d", i), at(time.Minute), 1, 1000))
	}
	f.apply(sale("h", "b", "o-b", at(2*time.Minute), 1, 1000), stockSet("h", "b", at(3*time.Minute), 5))
	sh := projections.NewShop("h")
	sh.Config = projections.DefaultFoldConfig()
	b := f.batch()
	for _, sku := range []string{"a", "b"} {
		b.Alerts = append(b.Alerts, sh.Add(f.seq, at(3*time.Minute), projections.Contribution{}, f.sku("h", sku).Contribution())...)
	}
	if sh.Alert == nil {
		t.Fatalf("setup: 9 of 20 lines unserved and no fulfilment_risk: %+v", sh.Totals)
	}
	in, ok := f.sku("h", "b").Sync()
	if !ok || in.Listed != 5 || in.Sellable != 0 {
		t.Fatalf("setup: b's instruction %+v %v, want listed 5 sellable 0", in, ok)
	}
	clearIn := projections.SyncInstruction{Shop: "h", SKU: "a", Seq: f.seq, Key: projections.SyncKey("h", "a", f.seq), Clear: true}
	b.Shops, b.Sync = []*projections.Shop{sh}, []projections.SyncInstruction{in, clearIn}
	if err := projections.Commit(ctx, s, b); err != nil {
		t.Fatal(err)
	}

	got, err := s.LoadShop(ctx, "h")
	if err != nil || got == nil {
		t.Fatalf("LoadShop(h) = %v, %v", got, err)
	}
	if got.Totals != sh.Totals || got.LastSeq != sh.LastSeq || got.Alert == nil || got.Alert.ID != sh.Alert.ID || got.Alert.Rev != sh.Alert.Rev {
		t.Errorf("LoadShop(h) = %+v (alert %+v), want %+v (alert %+v)", got, got.Alert, sh, sh.Alert)
	}
	if none, err := s.LoadShop(ctx, "nowhere"); none != nil || err != nil {
		t.Errorf("LoadShop of a shop never seen = %v, %v; want nil, nil", none, err)
	}
	h, err := s.ShopHealth(ctx, "h", at(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := projections.ShopHealth{Shop: "h", SKUs: 2, OpenLines: 20, DueWithin24h: 20, Unserved: 9, AtRiskLines: 9,
		ExposureFen: sh.Totals.ExposureFen, AtRiskPct: 45, LastSeq: f.seq}
	if h != want {
		t.Errorf("ShopHealth(h, 1h) = %+v, want %+v", h, want)
	}
	if h, _ := s.ShopHealth(ctx, "h", at(25*time.Hour)); h.DueWithin24h != 0 {
		t.Errorf("ShopHealth(h, 25h): %d lines due, want 0 (all past their ship-by)", h.DueWithin24h)
	}
	if _, err := s.ShopHealth(ctx, "nowhere", at(0)); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("ShopHealth of a shop never seen: %v, want ErrNotFound", err)
	}

	pending, err := s.PendingSync(ctx, 10)
	if err != nil || len(pending) != 2 {
		t.Fatalf("PendingSync = %+v, %v; want 2", pending, err)
	}
	checkOutboxSync(t, "PendingSync[0]", pending[0], in, f.seq)
	checkOutboxSync(t, "PendingSync[1] (the clear of a)", pending[1], clearIn, f.seq)
	if pending[1].ID <= pending[0].ID {
		t.Errorf("PendingSync ids %d, %d: want increasing", pending[0].ID, pending[1].ID)
	}
	if err := s.DeletePendingSync(ctx, pending[0].ID); err != nil {
		t.Fatal(err)
	}
	if rest, _ := s.PendingSync(ctx, 10); len(rest) != 1 || rest[0].ID != pending[1].ID {
		t.Errorf("PendingSync after deleting the first = %+v", rest)
	}
}

// checkOutboxSync compares a sync outbox entry with instruction in committed
// in a batch that left checkpoint: its message must be json.Marshal(in),
// byte for byte, as it is published as it is.
func checkOutboxSync(t *testing.T, when string, got projections.OutboxSync, in projections.SyncInstruction, checkpoint uint64) {
	t.Helper()
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatalf("encode instruction %s: %v", in.Key, err)
	}
	want := projections.OutboxSync{ID: got.ID, Shop: in.Shop, SKU: in.SKU, Seq: in.Seq, Key: in.Key, Clear: in.Clear,
		Data: data, Checkpoint: checkpoint}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %+v (%s)\nwant %+v (%s)", when, got, got.Data, want, want.Data)
	}
}
