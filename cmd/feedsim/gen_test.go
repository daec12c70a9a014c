package main

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"stockledger/ledger"
	"stockledger/projections"
)

var genT0 = time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)

// fed is a generated feed: its generator, its events (setup first) and the
// step that made each (0 for the setup).
type fed struct {
	g      *generator
	events []ledger.Event
	steps  []int
}

func feed(t *testing.T, c genConfig, steps int) *fed {
	t.Helper()
	g, err := newGenerator(c)
	if err != nil {
		t.Fatalf("newGenerator: %v", err)
	}
	f := &fed{g: g, events: append([]ledger.Event(nil), g.Setup()...)}
	f.steps = make([]int, len(f.events))
	for range steps {
		f.events = g.Next(f.events)
		for len(f.steps) < len(f.events) {
			f.steps = append(f.steps, g.n)
		}
	}
	return f
}

func encodeAll(t *testing.T, events []ledger.Event) []byte {
	t.Helper()
	var b bytes.Buffer
	for i := range events {
		b.Write(encode(t, &events[i]))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func encode(t *testing.T, e *ledger.Event) []byte {
	t.Helper()
	data, err := ledger.EncodeEvent(e)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// smallConfig is the default feed over a small catalogue, with its
// intervals and delays shortened so that a test run of some ten thousand
// steps has every part, re-sends included.
func smallConfig(seed uint64) genConfig {
	c := defaultGenConfig()
	c.Seed, c.Shops, c.SKUsPerShop, c.Start = seed, 3, 40, genT0
	c.DropEvery, c.DropLen, c.RecountEvery, c.SafetyEvery = 2_000, 1_000, 300, 700
	c.ReturnDelay, c.ResendAfter = 50*time.Millisecond, 5_000
	return c
}

func TestGeneratorDeterministic(t *testing.T) {
	a := feed(t, smallConfig(7), 10_000)
	b := feed(t, smallConfig(7), 10_000)
	if !bytes.Equal(encodeAll(t, a.events), encodeAll(t, b.events)) {
		t.Fatal("two feeds of seed 7 differ")
	}
	c := feed(t, smallConfig(8), 10_000)
	if bytes.Equal(encodeAll(t, a.events), encodeAll(t, c.events)) {
		t.Fatal("feeds of seeds 7 and 8 are the same")
	}
}

// TestGeneratorEventsValid checks that every event is valid and no later
// than the feed's clock, that no step makes more than stepEventsMax events,
// and that the feed has every event type but delisting.
func TestGeneratorEventsValid(t *testing.T) {
	const steps = 80_000
	f := feed(t, smallConfig(3), steps)
	types := map[ledger.Type]int{}
	perStep := map[int]int{}
	for i := range f.events {
		e := &f.events[i]
		if err := e.Validate(); err != nil {
			t.Fatalf("event %d (%s): %v", i, e.Type, err)
		}
		if e.At.After(genT0.Add(time.Duration(f.steps[i]) * eventStep)) {
			t.Fatalf("event %d at %s: after the feed's clock at step %d", i, e.At, f.steps[i])
		}
		types[e.Type]++
		if f.steps[i] > 0 {
			perStep[f.steps[i]]++
		}
	}
	for step, n := range perStep {
		if n > stepEventsMax {
			t.Errorf("step %d made %d events, more than stepEventsMax %d", step, n, stepEventsMax)
		}
	}
	for _, typ := range ledger.Types {
		if typ != ledger.Delisting && types[typ] == 0 { // the feed never delists
			t.Errorf("no %s event in %d steps; counts %v", typ, steps, types)
		}
	}
}

// TestGeneratorOrders checks that the lines of an order share its order id,
// its shop and its parent order, one line per SKU, sold at once; and that
// there are carts of two and three SKUs, Douyin-style ones among them.
func TestGeneratorOrders(t *testing.T) {
	f := feed(t, smallConfig(4), 40_000)
	type order struct {
		shop, parent string
		at           time.Time
		skus         []string
	}
	orders := map[string]*order{}
	seen := map[string]bool{}
	for i := range f.events {
		e := &f.events[i]
		if e.Type != ledger.Sale || seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		o := orders[e.OrderID]
		if o == nil {
			o = &order{shop: e.Shop, parent: e.ParentOrderID, at: e.At}
			orders[e.OrderID] = o
		}
		switch {
		case e.Shop != o.shop:
			t.Errorf("order %s: lines in shops %s and %s", e.OrderID, o.shop, e.Shop)
		case e.ParentOrderID != o.parent:
			t.Errorf("order %s: lines under parents %q and %q", e.OrderID, o.parent, e.ParentOrderID)
		case !e.At.Equal(o.at):
			t.Errorf("order %s: lines sold at %s and %s", e.OrderID, o.at, e.At)
		case slices.Contains(o.skus, e.SKU):
			t.Errorf("order %s: two lines of %s", e.OrderID, e.SKU)
		}
		o.skus = append(o.skus, e.SKU)
	}
	bySize := map[int]int{}
	douyin := 0
	for _, o := range orders {
		bySize[len(o.skus)]++
		if len(o.skus) > 1 && o.parent != "" {
			douyin++
		}
	}
	if bySize[1] == 0 || bySize[2] == 0 || bySize[3] == 0 || douyin == 0 || len(bySize) != 3 {
		t.Errorf("orders by lines %v, %d Douyin-style carts: want orders of 1, 2 and 3 lines, some with a parent", bySize, douyin)
	}
}

// testLine is a test's own account of one line, replayed from the events.
type testLine struct {
	qty, shipped, cancelled, returned int64
	// openAtFirstShip is the line's open units at its first shipment;
	// packaged is true once a shipment named a waybill.
	openAtFirstShip int64
	packaged        bool
	delayed         bool
	closedStep      int // 0 while open
}

func (l *testLine) open() int64 { return l.qty - l.shipped - l.cancelled }

// replay replays a feed's first copies of events line by line, refusing
// what goes past a line, and counts what the shares are measured on. It
// knows nothing of the generator's book or of the fold.
type replay struct {
	lines map[string]*testLine // by shop/sku/order
	keys  map[string]string    // natural key → id of its first event
	// resent[i] is true for an event that repeats an earlier one.
	resent []bool
	orders map[string]int // lines by order id
	// counts
	parentOrders, multiUnit, shipBy, returns, failed        int
	cancelsOfMany, partialCancels, promises, firstShipments int
}

func replayFeed(t *testing.T, f *fed) *replay {
	t.Helper()
	r := &replay{lines: map[string]*testLine{}, keys: map[string]string{}, orders: map[string]int{}}
	first := map[string][]byte{}
	for i := range f.events {
		e := &f.events[i]
		data := encode(t, e)
		if orig, ok := first[e.ID]; ok {
			if !bytes.Equal(orig, data) {
				t.Fatalf("event %d re-sends %s changed:\n first %s\n again %s", i, e.ID, orig, data)
			}
			r.resent = append(r.resent, true)
			continue
		}
		first[e.ID] = data
		r.resent = append(r.resent, false)
		if id, ok := r.keys[e.Key()]; ok {
			t.Fatalf("event %d (%s) has the natural key %s of event %s, another event", i, e.ID, e.Key(), id)
		}
		r.keys[e.Key()] = e.ID
		if err := r.apply(e, f.steps[i]); err != nil {
			t.Fatalf("event %d (%s %s/%s order %s): %v", i, e.Type, e.Shop, e.SKU, e.OrderID, err)
		}
	}
	return r
}

func (r *replay) apply(e *ledger.Event, step int) error {
	key := e.Shop + "/" + e.SKU + "/" + e.OrderID
	l := r.lines[key]
	switch e.Type {
	case ledger.Sale:
		if l != nil {
			return fmt.Errorf("a second sale of the line")
		}
		r.lines[key] = &testLine{qty: *e.Qty}
		if r.orders[e.OrderID]++; r.orders[e.OrderID] == 1 && e.ParentOrderID != "" {
			r.parentOrders++
		}
		if *e.Qty > 1 {
			r.multiUnit++
		}
		if e.ShipBy != nil {
			r.shipBy++
		}
		return nil
	case ledger.Cancel, ledger.Shipment, ledger.Return, ledger.PromiseChanged:
		if l == nil {
			return fmt.Errorf("before the line's sale")
		}
	default:
		return nil
	}
	n := l.open()
	if e.Qty != nil {
		n = *e.Qty
	}
	switch e.Type {
	case ledger.PromiseChanged:
		if l.open() == 0 || l.delayed {
			return fmt.Errorf("promise of a closed or delayed line")
		}
		l.delayed = true
		r.promises++
		return nil
	case ledger.Return:
		if back := l.shipped - l.returned; n > back {
			return fmt.Errorf("return of %d units: %d shipped and not returned", n, back)
		}
		r.returns++
		if e.Restocked != nil && *e.Restocked < n {
			r.failed++
		}
		l.returned += n
		return nil
	}
	if n < 1 || n > l.open() {
		return fmt.Errorf("%s of %d units: %d open", e.Type, n, l.open())
	}
	if e.Type == ledger.Cancel {
		if l.open() > 1 {
			r.cancelsOfMany++
			if e.Qty != nil {
				r.partialCancels++
			}
		}
		l.cancelled += n
	} else {
		if l.shipped == 0 {
			l.openAtFirstShip = l.open()
			r.firstShipments++
		}
		l.packaged = l.packaged || e.Waybill != ""
		l.shipped += n
	}
	if l.open() == 0 {
		l.closedStep = step
	}
	return nil
}

// TestGeneratorLinesBounded replays feeds of several seeds and checks that
// no shipment or cancel names more units than its line has open, no return
// more than it shipped, no event comes before its line's sale, every re-send
// is identical to its first copy, and no two events share a natural key.
func TestGeneratorLinesBounded(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		c := smallConfig(seed)
		c.MultiUnitShare, c.PackageShare, c.ReturnShare = 0.5, 0.8, 0.3 // more of the parts that could go past a line
		r := replayFeed(t, feed(t, c, 30_000))
		if r.returns == 0 || r.partialCancels == 0 {
			t.Errorf("seed %d: %d returns, %d partial cancels: want some", seed, r.returns, r.partialCancels)
		}
	}
}

// near checks a measured share: within five standard errors of the
// configured one, plus slack for what the feed adjusts (a line never sells
// more units than the platform shows, a run's end cuts off work pending).
func near(t *testing.T, name string, got, of int, want, slack float64) {
	t.Helper()
	if of == 0 {
		t.Errorf("%s: nothing to measure", name)
		return
	}
	share := float64(got) / float64(of)
	tol := 5*math.Sqrt(want*(1-want)/float64(of)) + slack*want
	if math.Abs(share-want) > tol {
		t.Errorf("%s: %d of %d = %.3f, want %.3f ± %.3f", name, got, of, share, want, tol)
	}
}

// TestGeneratorShares checks that each share is roughly as configured over
// a run.
func TestGeneratorShares(t *testing.T) {
	const steps = 100_000
	c := smallConfig(6)
	c.CartShare, c.ParentShare, c.MultiUnitShare, c.ShipByShare = 0.3, 0.4, 0.2, 0.25
	c.PackageShare, c.PartialCancelShare, c.PromiseShare = 0.6, 0.3, 0.1
	c.ReturnShare, c.InspectFailShare, c.ResendShare = 0.2, 0.3, 0.05
	f := feed(t, c, steps)
	r := replayFeed(t, f)

	orders, carts, lines := 0, 0, 0
	for _, n := range r.orders {
		orders++
		lines += n
		if n > 1 {
			carts++
		}
	}
	// A cart picks 1 or 2 more SKUs of the shop by popularity; a pick of a
	// SKU already in it, or of one showing no stock, is dropped.
	near(t, "carts of orders", carts, orders, c.CartShare, 0.15)
	near(t, "Douyin-style carts", r.parentOrders, carts, c.ParentShare, 0.1)
	near(t, "lines of several units", r.multiUnit, lines, c.MultiUnitShare, 0.05)
	near(t, "sales with ship_by", r.shipBy, lines, c.ShipByShare, 0)

	var packaged, ofMany, closedShipped, returned int
	margin := int(c.ReturnDelay/eventStep) + 2_000 // a return may still be pending
	for _, l := range r.lines {
		if l.openAtFirstShip > 1 {
			ofMany++
			if l.packaged {
				packaged++
			}
		}
		if l.shipped > 0 && l.closedStep > 0 && l.closedStep < steps-margin {
			closedShipped++
			if l.returned > 0 {
				returned++
			}
		}
	}
	// A partial cancel between two packages can leave a packaged line with
	// one open unit, which ships with no waybill: the slack.
	near(t, "lines of several units shipped in packages", packaged, ofMany, c.PackageShare, 0.1)
	near(t, "cancels of several units that refund part", r.partialCancels, r.cancelsOfMany, c.PartialCancelShare, 0)
	near(t, "lines that shipped with a promise moved", r.promises, r.firstShipments, c.PromiseShare, 0.1)
	near(t, "shipped lines returned", returned, closedShipped, c.ReturnShare, 0.05)
	near(t, "returns with units failing inspection", r.failed, r.returns, c.InspectFailShare, 0)

	resent, own := 0, 0
	for i, again := range r.resent {
		switch {
		case again:
			resent++
		case f.steps[i] <= steps-c.ResendAfter-1_000:
			own++ // its re-send, if picked, is in the run
		}
	}
	// Re-sends of events past the cut count too: a small bias up.
	near(t, "events re-sent", resent, own, c.ResendShare, 0.1)
}

// TestGeneratorResends checks that a re-send repeats its first copy (the
// same bytes, id and natural key) ResendAfter steps or more later, and that
// every kind of event is re-sent.
func TestGeneratorResends(t *testing.T) {
	c := smallConfig(9)
	c.ResendShare = 1 // restocks and stock_sets are rare: re-send every event
	f := feed(t, c, 40_000)
	first := map[string]int{}
	types := map[ledger.Type]int{}
	for i := range f.events {
		e := &f.events[i]
		j, ok := first[e.ID]
		if !ok {
			first[e.ID] = i
			continue
		}
		o := &f.events[j]
		if !bytes.Equal(encode(t, o), encode(t, e)) || o.Key() != e.Key() {
			t.Fatalf("event %d re-sends event %d changed:\n first %s\n again %s", i, j, encode(t, o), encode(t, e))
		}
		if d := f.steps[i] - f.steps[j]; d < c.ResendAfter {
			t.Errorf("event %d re-sent %d steps after its first copy, want at least %d", i, d, c.ResendAfter)
		}
		types[e.Type]++
	}
	for _, typ := range ledger.Types {
		if typ != ledger.Delisting && types[typ] == 0 {
			t.Errorf("no %s re-sent; re-sends by type %v", typ, types)
		}
	}
}

// foldFigures are the figures the fold and the feed's book both keep.
type foldFigures struct {
	Listed, OnHand, Committed, PresaleCommitted, PresaleShipped, Capacity, SafetyStock, OpenLines int64
}

// lineFigures are the units of a line and its promise.
type lineFigures struct {
	Qty, Shipped, Cancelled, Returned int64
	ShipBy                            time.Time
}

func foldLine(l *projections.Line) lineFigures {
	return lineFigures{l.Qty, l.Shipped, l.Cancelled, l.Returned, l.ShipBy}
}

func bookLine(l *simLine) lineFigures {
	return lineFigures{l.qty, l.shipped, l.cancelled, l.returned, l.shipBy.UTC()}
}

// snapshot is what a re-send must leave as it was: the SKU's view but for
// its last sequence and update time, and the line the event names.
type snapshot struct {
	view projections.View
	line *projections.Line
}

func snap(s *projections.SKU, e *ledger.Event) snapshot {
	v := s.View()
	v.LastSeq, v.UpdatedAt = 0, time.Time{}
	sn := snapshot{view: v}
	if l, ok := s.Lines[e.OrderID]; ok && e.OrderID != "" {
		c := *l
		c.Docs, c.Early, c.Promise.IDs = slices.Clone(l.Docs), slices.Clone(l.Early), slices.Clone(l.Promise.IDs)
		sn.line = &c
	}
	return sn
}

// TestGeneratorFoldAgrees folds a generated feed, re-sends included, with
// the ledger's fold (each event at its stream sequence) and checks that the
// fold refuses nothing, that no re-send changes anything, and that the
// fold's figures of every SKU, and of every line the feed's book holds,
// equal the book's: the feed and the fold agree.
func TestGeneratorFoldAgrees(t *testing.T) {
	for _, tc := range []struct {
		seed  uint64
		share float64
	}{{3, 0.05}, {11, 1}} { // 1: every event again, so that every type is re-sent
		t.Run(fmt.Sprintf("seed %d re-send %g", tc.seed, tc.share), func(t *testing.T) {
			const steps = 60_000
			c := smallConfig(tc.seed)
			c.ResendShare = tc.share
			f := feed(t, c, steps)
			skus := map[projections.SKUKey]*projections.SKU{}
			seen := map[string]bool{}
			resends := map[ledger.Type]int{}
			for i := range f.events {
				e := &f.events[i]
				k := projections.SKUKey{Shop: e.Shop, SKU: e.SKU}
				s := skus[k]
				if s == nil {
					s = projections.NewSKU(e.Shop, e.SKU)
					skus[k] = s
				}
				again := seen[e.ID]
				var before snapshot
				if again {
					before = snap(s, e)
				}
				changes, err := s.Apply(uint64(i+1), e)
				if err != nil {
					t.Fatalf("fold event %d (%s): %v", i, e.Type, err)
				}
				seen[e.ID] = true
				if !again {
					continue
				}
				resends[e.Type]++
				if after := snap(s, e); !reflect.DeepEqual(before, after) || len(changes) > 0 {
					t.Errorf("re-send %d (%s %s) changed the fold: %d alert changes\nbefore %+v %+v\n after %+v %+v",
						i, e.Type, e.Key(), len(changes), before.view, before.line, after.view, after.line)
				}
			}
			for _, typ := range ledger.Types {
				if typ != ledger.Delisting && resends[typ] == 0 && tc.share == 1 {
					t.Errorf("no %s re-sent; re-sends folded by type %v", typ, resends)
				}
			}
			t.Logf("re-sends folded by type: %v", resends)

			bookLines := map[projections.SKUKey][]*simLine{}
			for _, l := range f.g.open {
				k := projections.SKUKey{Shop: l.sku.shop, SKU: l.sku.sku}
				bookLines[k] = append(bookLines[k], l)
			}
			for _, s := range f.g.skus {
				k := projections.SKUKey{Shop: s.shop, SKU: s.sku}
				fs := skus[k]
				want := foldFigures{s.listed, s.onHand, s.committed, s.presaleCommitted, s.presaleShipped, s.capacity(), s.safety, int64(len(bookLines[k]))}
				v := fs.View()
				got := foldFigures{v.Listed, v.OnHand, v.Committed, v.PresaleCommitted, v.PresaleShipped, v.Capacity, v.SafetyStock, v.OpenOrders}
				if got != want {
					t.Errorf("%s/%s:\nfold %+v\nbook %+v", s.shop, s.sku, got, want)
				}
				// The platform simulator stops selling by the book's limits.
				if fs.RealLimit() != s.realLimit() || v.Sellable != s.sellable() {
					t.Errorf("%s/%s: fold real limit %d sellable %d, book %d %d", s.shop, s.sku, fs.RealLimit(), v.Sellable, s.realLimit(), s.sellable())
				}
			}
			lines := slices.Clone(f.g.open)
			for _, p := range f.g.returns.items[f.g.returns.head:] {
				lines = append(lines, p.line)
			}
			for _, l := range lines {
				fl, ok := skus[projections.SKUKey{Shop: l.sku.shop, SKU: l.sku.sku}].Lines[l.order]
				if !ok {
					t.Errorf("%s/%s line %s: in the book, not in the fold", l.sku.shop, l.sku.sku, l.order)
					continue
				}
				if got, want := foldLine(fl), bookLine(l); got != want {
					t.Errorf("%s/%s line %s:\nfold %+v\nbook %+v", l.sku.shop, l.sku.sku, l.order, got, want)
				}
			}
		})
	}
}

// TestGeneratorLinkDrop checks that during a link drop one SKU is in most
// orders, and outside it none is.
func TestGeneratorLinkDrop(t *testing.T) {
	c := smallConfig(5)
	g, err := newGenerator(c)
	if err != nil {
		t.Fatal(err)
	}
	topShare := func(from, to int) float64 {
		counts := map[string]int{}  // orders by SKU
		orders := map[string]bool{} // order ids
		sales := map[string]bool{}  // ids of the sales seen
		var buf []ledger.Event
		for g.n < to {
			buf = g.Next(buf[:0])
			if g.n <= from {
				continue
			}
			for _, e := range buf {
				if e.Type != ledger.Sale || sales[e.ID] {
					continue // re-sent
				}
				sales[e.ID] = true
				orders[e.OrderID] = true
				counts[e.Shop+"/"+e.SKU]++ // one line per SKU of an order
			}
		}
		top := 0
		for _, n := range counts {
			top = max(top, n)
		}
		return float64(top) / float64(max(1, len(orders)))
	}
	// The first drop runs over steps DropEvery .. DropEvery+DropLen.
	if share := topShare(c.DropLen, c.DropEvery); share > 0.5 {
		t.Errorf("before the drop, the top SKU was in %.0f%% of orders", 100*share)
	}
	if share := topShare(c.DropEvery, c.DropEvery+c.DropLen); share < 0.7 {
		t.Errorf("during the drop, the top SKU was in %.0f%% of orders, want most (drop share %.0f%%)", 100*share, 100*c.DropShare)
	}
}

func TestGeneratorConfigRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		mod   func(*genConfig)
		field string
	}{
		"no shops":          {func(c *genConfig) { c.Shops = 0 }, "Shops"},
		"flat zipf":         {func(c *genConfig) { c.ZipfS = 1 }, "ZipfS"},
		"long drop":         {func(c *genConfig) { c.DropLen = c.DropEvery + 1 }, "DropLen"},
		"all cancel":        {func(c *genConfig) { c.CancelShare = 0.95 }, "CancelShare"},
		"cart share":        {func(c *genConfig) { c.CartShare = 1.5 }, "CartShare"},
		"negative return":   {func(c *genConfig) { c.ReturnShare = -0.1 }, "ReturnShare"},
		"NaN resend":        {func(c *genConfig) { c.ResendShare = math.NaN() }, "ResendShare"},
		"no resend delay":   {func(c *genConfig) { c.ResendAfter = 0 }, "ResendAfter"},
		"resend queue":      {func(c *genConfig) { c.ResendShare, c.ResendAfter = 0.5, 1_000_000 }, "ResendAfter"},
		"negative shrink":   {func(c *genConfig) { c.ShrinkMax = -1 }, "ShrinkMax"},
		"negative safety":   {func(c *genConfig) { c.SafetyMax = -1 }, "SafetyMax"},
		"long return delay": {func(c *genConfig) { c.ReturnDelay = 48 * time.Hour }, "ReturnDelay"},
		"start far":         {func(c *genConfig) { c.Start = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC) }, "Start"},
	} {
		c := defaultGenConfig()
		tc.mod(&c)
		_, err := newGenerator(c)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: newGenerator gave %v, want an error naming %s", name, err, tc.field)
		}
	}
	if _, err := newGenerator(defaultGenConfig()); err != nil {
		t.Errorf("default config refused: %v", err)
	}
}
