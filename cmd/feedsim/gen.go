package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"

	"stockledger/ledger"
)

// Generator bounds. Every queue the generator keeps has one.
const (
	// openLinesMax bounds the open order lines the feed remembers for later
	// cancels, shipments and promise changes; when it is reached, the
	// oldest line ships whole before the next order is taken.
	openLinesMax = 100_000
	// returnsPendingMax bounds the shipped lines waiting for their buyer's
	// return; when it is full, a line picked for a return gets none.
	returnsPendingMax = 20_000
	// resendPendingMax bounds the events waiting to be sent again; when it
	// is full, an event picked for a re-send is sent once only. check keeps
	// the expected length (ResendShare × ResendAfter events, a step making
	// about one) at most half of it.
	resendPendingMax = 100_000
	// resendsPerStepMax bounds the re-sends one step carries; re-sends due
	// past it wait for the next steps (the setup's come due at once).
	resendsPerStepMax = 4
	// cancelRecentMax: a buyer cancels one of this many most recent open
	// lines.
	cancelRecentMax = 1_000
	// cartLinesMax is the most SKUs of one cart (one line each), and
	// unitsPerLineMax the most units of one line.
	cartLinesMax    = 3
	unitsPerLineMax = 3
	// ownEventsMax is the most events one step makes of its own: a safety
	// stock setting, a cart whose every SKU shows no stock relists each (a
	// presale SKU: two supplier confirmations and a stock_set), and a
	// buyer's return.
	ownEventsMax = 1 + 3*cartLinesMax + 1
	// stepEventsMax is the most events Next appends in one step: its own
	// and the re-sends due.
	stepEventsMax = ownEventsMax + resendsPerStepMax
	// shopsMax and skusPerShopMax bound the catalogue.
	shopsMax       = 100
	skusPerShopMax = 100_000
	// delayMax bounds ShipDelay and ReturnDelay (event time).
	delayMax = 24 * time.Hour
	// eventStep is how far the feed's clock moves per step: 20,000 steps
	// per second of event time, faster than any publish rate here, so
	// `at` never runs ahead of the ingest clock by more than the run's
	// length divided by that rate.
	eventStep = 50 * time.Microsecond
)

// genConfig shapes a feed. The same config and seed give the same events.
// Shares are fractions from 0 to 1.
type genConfig struct {
	Seed        uint64
	Shops       int
	SKUsPerShop int
	// ZipfS is the skew of SKU popularity (> 1; larger is more skewed).
	ZipfS float64
	// DropEvery and DropLen: every DropEvery steps a "link drop" starts,
	// and for DropLen steps DropShare of the orders go to one SKU.
	DropEvery, DropLen int
	DropShare          float64
	// CancelShare and ShipShare are the shares of steps that cancel (part
	// of) an open line or ship (part of) the oldest one once it is older
	// than ShipDelay (event time); a ship step with no line that old takes
	// an order instead. ShipShare is large enough that the warehouse keeps
	// pace with the lines sold (carts, packages and delays included): open
	// lines stay near the sales of one ShipDelay.
	CancelShare, ShipShare float64
	ShipDelay              time.Duration
	// CartShare of orders are carts of 2 to cartLinesMax SKUs of one shop
	// under one order_id, each SKU its own sale (a line); ParentShare of
	// carts come Douyin-style, with a parent_order_id.
	CartShare, ParentShare float64
	// MultiUnitShare of lines sell 2 to unitsPerLineMax units (never more
	// than the platform shows).
	MultiUnitShare float64
	// ShipByShare of sales carry the platform's promised ship time
	// (ship_by), given to the hour.
	ShipByShare float64
	// PackageShare of lines with more than one open unit when they come up
	// to ship go out in packages (shipments with qty and a waybill); the
	// rest of such a line ships as one more package or a shipment of every
	// open unit (no qty).
	PackageShare float64
	// PartialCancelShare of cancels of a line with more than one open unit
	// refund part of it (qty and a refund_id); the others cancel every open
	// unit (no qty).
	PartialCancelShare float64
	// PromiseShare of lines that come up to ship get a promise_changed
	// instead, once: the merchant files a delay (ship_by one or two days
	// later) and the line ships after the lines sold since.
	PromiseShare float64
	// ReturnShare of lines closed with shipped units are returned
	// ReturnDelay (event time) later: some of the shipped units come back,
	// and InspectFailShare of returns have units that fail inspection
	// (restocked < qty); the units that pass go back on hand.
	ReturnShare, InspectFailShare float64
	ReturnDelay                   time.Duration
	// RecountEvery: one recount every RecountEvery steps, of a SKU picked
	// by popularity, finding up to ShrinkMax units fewer than the feed's
	// book. 0: no recounts.
	RecountEvery int
	ShrinkMax    int64
	// SafetyEvery: one safety_stock_set every SafetyEvery steps, of a SKU
	// picked by popularity, keeping back 0 to SafetyMax units. 0: none.
	SafetyEvery int
	SafetyMax   int64
	// PresaleShare of SKUs sell as presale; ShortShare of supplier
	// confirmations fall short of the presale stock listed.
	PresaleShare, ShortShare float64
	// ResendShare of events (the setup's too) are published again
	// ResendAfter steps later, identical (the same id, the same natural
	// key), as platform pushes repeat and feeds re-poll. The default delay
	// is 3 minutes at the feed's default rate of 2,000 events a second:
	// past the stream's duplicate window (10 s by default, at most 10 minutes), so that it is the fold's
	// once-forever rule that keeps a re-send out of the figures. A run
	// shorter than ResendAfter steps re-sends nothing.
	ResendShare float64
	ResendAfter int
	// Start is the event time of the first event; zero means now.
	Start time.Time
}

func defaultGenConfig() genConfig {
	return genConfig{
		Seed: 1, Shops: 4, SKUsPerShop: 500, ZipfS: 1.1,
		DropEvery: 20_000, DropLen: 5_000, DropShare: 0.8,
		CancelShare: 0.04, ShipShare: 0.6, ShipDelay: 250 * time.Millisecond,
		CartShare: 0.15, ParentShare: 0.5, MultiUnitShare: 0.1, ShipByShare: 0.3,
		PackageShare: 0.5, PartialCancelShare: 0.5, PromiseShare: 0.02,
		ReturnShare: 0.05, InspectFailShare: 0.2, ReturnDelay: time.Second,
		RecountEvery: 2_000, ShrinkMax: 3,
		SafetyEvery: 5_000, SafetyMax: 20,
		PresaleShare: 0.2, ShortShare: 0.3,
		ResendShare: 0.02, ResendAfter: 360_000,
	}
}

// check reports every field out of its bounds at once, each error naming
// the field (and its flag, where it has one).
func (c genConfig) check() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Shops < 1 || c.Shops > shopsMax {
		bad("Shops (-shops) %d: must be 1 to %d", c.Shops, shopsMax)
	}
	if c.SKUsPerShop < 1 || c.SKUsPerShop > skusPerShopMax {
		bad("SKUsPerShop (-skus) %d: must be 1 to %d per shop", c.SKUsPerShop, skusPerShopMax)
	}
	if !(c.ZipfS > 1) {
		bad("ZipfS (-zipf) %g: must be greater than 1", c.ZipfS)
	}
	if c.DropEvery < 1 || c.DropLen < 0 || c.DropLen > c.DropEvery {
		bad("DropEvery (-drop-every) %d, DropLen (-drop-len) %d: need DropEvery ≥ 1 and 0 ≤ DropLen ≤ DropEvery", c.DropEvery, c.DropLen)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"DropShare (-drop-share)", c.DropShare}, {"CancelShare", c.CancelShare}, {"ShipShare", c.ShipShare},
		{"CartShare", c.CartShare}, {"ParentShare", c.ParentShare}, {"MultiUnitShare", c.MultiUnitShare},
		{"ShipByShare", c.ShipByShare}, {"PackageShare", c.PackageShare}, {"PartialCancelShare", c.PartialCancelShare},
		{"PromiseShare", c.PromiseShare}, {"ReturnShare", c.ReturnShare}, {"InspectFailShare", c.InspectFailShare},
		{"PresaleShare", c.PresaleShare}, {"ShortShare", c.ShortShare}, {"ResendShare (-resend-share)", c.ResendShare},
	} {
		if !(f.v >= 0 && f.v <= 1) { // NaN too
			bad("%s %g: must be from 0 to 1", f.name, f.v)
		}
	}
	if c.CancelShare+c.ShipShare > 0.9 {
		bad("CancelShare %g + ShipShare %g: must leave room for orders (sum ≤ 0.9)", c.CancelShare, c.ShipShare)
	}
	if c.ShipDelay < 0 || c.ShipDelay > delayMax {
		bad("ShipDelay %s: must be 0 to %s", c.ShipDelay, delayMax)
	}
	if c.ReturnDelay < 0 || c.ReturnDelay > delayMax {
		bad("ReturnDelay %s: must be 0 to %s", c.ReturnDelay, delayMax)
	}
	if c.RecountEvery < 0 {
		bad("RecountEvery %d: must be 0 (no recounts) or more", c.RecountEvery)
	}
	if c.ShrinkMax < 0 || c.ShrinkMax > ledger.MaxQty {
		bad("ShrinkMax %d: must be 0 to %d", c.ShrinkMax, ledger.MaxQty)
	}
	if c.SafetyEvery < 0 {
		bad("SafetyEvery %d: must be 0 (no safety stock) or more", c.SafetyEvery)
	}
	if c.SafetyMax < 0 || c.SafetyMax > ledger.MaxQty {
		bad("SafetyMax %d: must be 0 to %d", c.SafetyMax, ledger.MaxQty)
	}
	if c.ResendAfter < 1 {
		bad("ResendAfter (-resend-after) %d: must be at least 1 step", c.ResendAfter)
	} else if pending := c.ResendShare * float64(c.ResendAfter); pending > resendPendingMax/2 {
		bad("ResendShare (-resend-share) %g × ResendAfter (-resend-after) %d: about %.0f events would wait for their re-send, more than %d (half the queue's bound): lower either",
			c.ResendShare, c.ResendAfter, pending, resendPendingMax/2)
	}
	if !c.Start.IsZero() && (c.Start.Before(ledger.MinAt) || c.Start.After(ledger.MaxAt.AddDate(-1, 0, 0))) {
		bad("Start (-start) %s: must lie from %s to a year before %s", c.Start.Format(time.RFC3339),
			ledger.MinAt.Format("2006-01-02"), ledger.MaxAt.Format("2006-01-02"))
	}
	return errors.Join(errs...)
}

// simSKU is the feed's own book of one SKU: what the platform shows, what
// the warehouse holds, what suppliers confirmed and what is sold and not
// yet shipped, as the merchant believes it. Its figures are the ones the
// ledger's fold reaches from the feed (TestGeneratorFoldAgrees).
type simSKU struct {
	shop, sku string
	shopIndex int
	presale   bool
	// shipHours (spot) or shipDays (presale) is the listing's promise.
	shipHours, shipDays int
	priceFen            int64
	listed              int64
	onHand              int64
	// committed and presaleCommitted are the open units of the SKU's
	// lines (spot, presale); presaleShipped the presale units shipped.
	committed, presaleCommitted, presaleShipped int64
	// supplied is each supplier's confirmed total (presale).
	supplied [2]int64
	safety   int64
}

func (s *simSKU) form() ledger.SalesForm {
	if s.presale {
		return ledger.Presale
	}
	return ledger.Spot
}

// commit adds n open units of the SKU's form (n < 0 takes them away).
func (s *simSKU) commit(n int64) {
	if s.presale {
		s.presaleCommitted += n
	} else {
		s.committed += n
	}
}

func (s *simSKU) capacity() int64 { return s.supplied[0] + s.supplied[1] }

// realLimit is what the SKU can really still sell, as the fold's RealLimit:
// on hand less the open spot units, or the confirmed capacity less the
// presale units sold (open or shipped).
func (s *simSKU) realLimit() int64 {
	if s.presale {
		return s.capacity() - s.presaleCommitted - s.presaleShipped
	}
	return s.onHand - s.committed
}

// sellable is what the platform should show, as the fold's Sellable.
func (s *simSKU) sellable() int64 { return max(0, s.realLimit()-s.safety) }

// generator produces a livestream order feed, deterministically from its
// seed. It is not safe for concurrent use.
type generator struct {
	c     genConfig
	rng   *rand.Rand
	zipf  *rand.Zipf
	skus  []*simSKU // shop-major: skus[shop*SKUsPerShop+i]
	setup []ledger.Event
	// open holds the lines with open units in shipping order: oldest sale
	// first, a line whose promise was moved at the back.
	open    []*simLine
	returns queue[pendingReturn]
	resends queue[pendingResend]
	n       int // steps taken after setup
	orders  int
	docs    int // documents named: receipts, waybills, refunds, returns
	clock   time.Time
	drop    *simSKU
	// phantomSold counts the units sold past their SKU's real limit: sold
	// by the platform, impossible to ship. Bookkeeping only: it draws
	// nothing from rng.
	phantomSold int64
	// ranOut, when set, sees each SKU whose real limit an event (a sale, a
	// recount) left at 0 or below while the platform still shows stock: the
	// platform goes on selling units that are not there.
	ranOut func(*simSKU)
}

func newGenerator(c genConfig) (*generator, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	if c.Start.IsZero() {
		c.Start = time.Now().UTC().Truncate(time.Second)
	}
	rng := rand.New(rand.NewPCG(c.Seed, c.Seed^0x5eed))
	g := &generator{c: c, rng: rng, clock: c.Start.UTC(),
		returns: queue[pendingReturn]{max: returnsPendingMax}, resends: queue[pendingResend]{max: resendPendingMax}}
	g.zipf = rand.NewZipf(rng, c.ZipfS, 1, uint64(c.SKUsPerShop-1))
	for shop := range c.Shops {
		for i := range c.SKUsPerShop {
			s := &simSKU{
				shop: fmt.Sprintf("shop-%02d", shop), sku: fmt.Sprintf("sku-%05d", i), shopIndex: shop,
				presale:  rng.Float64() < c.PresaleShare,
				priceFen: 990 + 100*rng.Int64N(200),
			}
			g.skus = append(g.skus, s)
			g.setup = append(g.setup, g.listing(s)...)
		}
	}
	g.scheduleResends(g.setup)
	return g, nil
}

// Setup returns the listings (and the presale confirmations) that open the
// feed; Next continues after them.
func (g *generator) Setup() []ledger.Event { return g.setup }

func (g *generator) id() string {
	var b [16]byte
	for i := range 2 {
		v := g.rng.Uint64()
		for j := range 8 {
			b[i*8+j] = byte(v >> (8 * j))
		}
	}
	u, _ := uuid.FromBytes(b[:]) // 16 bytes: cannot fail
	u[6] = (u[6] & 0x0f) | 0x40  // version 4
	u[8] = (u[8] & 0x3f) | 0x80  // RFC 4122 variant
	return u.String()
}

func (g *generator) event(s *simSKU, t ledger.Type) ledger.Event {
	return ledger.Event{ID: g.id(), Type: t, Shop: s.shop, SKU: s.sku, At: g.clock}
}

// doc returns a fresh document id (receipt, waybill, refund, return) with
// the given prefix: unique in the feed of one seed.
func (g *generator) doc(prefix string) string {
	g.docs++
	return fmt.Sprintf("%s-%d-%d", prefix, g.c.Seed, g.docs)
}

// listing lists s with fresh stock; a presale SKU also gets supplier
// confirmations, which fall short of the stock listed ShortShare of the time.
func (g *generator) listing(s *simSKU) []ledger.Event {
	stock := 200 + g.rng.Int64N(5_000)
	e := g.event(s, ledger.Listing)
	e.Title, e.PriceFen, e.Stock = "item "+s.sku, s.priceFen, ledger.Int64(stock)
	s.listed = stock
	if !s.presale {
		s.shipHours = []int{24, 48, 72}[g.rng.IntN(3)]
		e.SalesForm, e.ShipWithinHours = ledger.Spot, s.shipHours
		s.onHand = stock
		return []ledger.Event{e}
	}
	s.shipDays = ledger.MinShipDays + g.rng.IntN(ledger.MaxShipDays-ledger.MinShipDays+1)
	e.SalesForm, e.ShipWithinDays = ledger.Presale, s.shipDays
	return append([]ledger.Event{e}, g.confirm(s, stock)...)
}

// confirm has two suppliers confirm more units in all (fewer, ShortShare of
// the time: the factory cannot make them all). A confirmation states the
// supplier's total for the SKU and replaces its earlier one, so each
// supplier confirms its running total.
func (g *generator) confirm(s *simSKU, more int64) []ledger.Event {
	add := more
	if g.rng.Float64() < g.c.ShortShare {
		add = more * (50 + g.rng.Int64N(45)) / 100
	}
	var out []ledger.Event
	for i, q := range []int64{add / 2, add - add/2} {
		s.supplied[i] += q
		e := g.event(s, ledger.CapacityConfirmed)
		e.Supplier, e.Qty = fmt.Sprintf("factory-%d", i+1), ledger.Int64(s.supplied[i])
		e.DeliverBy = ledger.Time(g.clock.AddDate(0, 0, 30))
		out = append(out, e)
	}
	return out
}

// relist puts s back on the platform once it shows no stock: the merchant
// restocks (spot) or confirms more capacity (presale) and sets the stock
// again, as a host would before the next link.
func (g *generator) relist(out []ledger.Event, s *simSKU) []ledger.Event {
	more := 500 + g.rng.Int64N(5_000)
	if s.presale {
		out = append(out, g.confirm(s, more)...)
	} else {
		e := g.event(s, ledger.Restock)
		e.Qty, e.ReceiptID = ledger.Int64(more), g.doc("rc")
		out = append(out, e)
		s.onHand += more
	}
	e := g.event(s, ledger.StockSet)
	e.Stock = ledger.Int64(more)
	s.listed = more
	return append(out, e)
}

// pick returns a SKU by popularity, or the dropped link's SKU while a drop
// runs.
func (g *generator) pick() *simSKU {
	if g.drop != nil && g.rng.Float64() < g.c.DropShare {
		return g.drop
	}
	return g.pickIn(g.rng.IntN(g.c.Shops))
}

// pickIn returns a SKU of one shop by popularity.
func (g *generator) pickIn(shop int) *simSKU {
	return g.skus[shop*g.c.SKUsPerShop+int(g.zipf.Uint64())]
}

// Next appends the next step of the feed to out and returns it: usually one
// event, a few when a cart is bought, a link relisted or a buyer returns
// goods, plus the re-sends due; at most stepEventsMax.
func (g *generator) Next(out []ledger.Event) []ledger.Event {
	g.n++
	g.clock = g.clock.Add(eventStep)
	switch phase := g.n % g.c.DropEvery; {
	case phase == 0:
		g.drop = g.skus[g.rng.IntN(len(g.skus))]
	case phase == g.c.DropLen:
		g.drop = nil
	}
	out = g.resendDue(out)
	own := len(out)
	out = g.returnDue(out)
	out = g.step(out)
	g.scheduleResends(out[own:])
	return out
}

// step makes the step's own events: a safety stock setting at its
// interval, then a recount at its interval, else a cancel, a shipment or an
// order.
func (g *generator) step(out []ledger.Event) []ledger.Event {
	if g.c.SafetyEvery > 0 && g.n%g.c.SafetyEvery == 0 {
		out = g.safety(out, g.pick())
	}
	if g.c.RecountEvery > 0 && g.n%g.c.RecountEvery == 0 {
		return g.recount(out, g.pick())
	}
	switch r := g.rng.Float64(); {
	case r < g.c.CancelShare && len(g.open) > 0:
		return g.cancel(out)
	case r < g.c.CancelShare+g.c.ShipShare && len(g.open) > 0 && g.clock.Sub(g.open[0].soldAt) >= g.c.ShipDelay:
		return g.ship(out)
	}
	if len(g.open)+cartLinesMax > openLinesMax {
		return g.shipAll(out)
	}
	return g.order(out, g.pick())
}

// recount counts a spot SKU and finds a little less than the book: shrinkage.
func (g *generator) recount(out []ledger.Event, s *simSKU) []ledger.Event {
	if s.presale {
		return g.order(out, s)
	}
	shrink := g.rng.Int64N(g.c.ShrinkMax + 1)
	e := g.event(s, ledger.Recount)
	e.Counted, e.CountedBy = ledger.Int64(max(0, s.onHand-shrink)), "warehouse"
	s.onHand = max(0, s.onHand-shrink)
	g.checkRunOut(s)
	return append(out, e)
}

// checkRunOut tells ranOut about s when the platform shows stock of it
// past its real limit's end.
func (g *generator) checkRunOut(s *simSKU) {
	if g.ranOut != nil && s.listed > 0 && s.realLimit() <= 0 {
		g.ranOut(s)
	}
}

// safety has the merchant keep some units of s back from the platform
// (other channels, samples).
func (g *generator) safety(out []ledger.Event, s *simSKU) []ledger.Event {
	e := g.event(s, ledger.SafetyStockSet)
	s.safety = g.rng.Int64N(g.c.SafetyMax + 1)
	e.Qty = ledger.Int64(s.safety)
	return append(out, e)
}
