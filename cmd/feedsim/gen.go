package main

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"

	"stockledger/ledger"
)

// Generator bounds. Every queue the generator keeps has one.
const (
	// openOrdersMax bounds the orders the feed remembers for later cancels
	// and shipments; past it the oldest order ships at once.
	openOrdersMax = 100_000
	// shopsMax and skusPerShopMax bound the catalogue.
	shopsMax       = 100
	skusPerShopMax = 100_000
	// eventStep is how far the feed's clock moves per event: 20,000
	// events per second of event time, faster than any publish rate here,
	// so `at` never runs ahead of the ingest clock by more than the run's
	// length divided by that rate.
	eventStep = 50 * time.Microsecond
)

// genConfig shapes a feed. The same config and seed give the same events.
type genConfig struct {
	Seed        uint64
	Shops       int
	SKUsPerShop int
	// ZipfS is the skew of SKU popularity (> 1; larger is more skewed).
	ZipfS float64
	// DropEvery and DropLen: every DropEvery events a "link drop" starts,
	// and for DropLen events DropShare of the sales go to one SKU.
	DropEvery, DropLen int
	DropShare          float64
	// CancelShare and ShipShare are the shares of events that cancel an
	// open order or ship the oldest one once it is older than ShipDelay
	// (event time). ShipShare is large enough that the warehouse keeps pace
	// with sales: open orders stay near the sales of one ShipDelay.
	CancelShare, ShipShare float64
	ShipDelay              time.Duration
	// RecountEvery: one recount every RecountEvery events, of a SKU picked by
	// popularity, finding up to ShrinkMax units fewer than the feed's book.
	RecountEvery int
	ShrinkMax    int64
	// PresaleShare of SKUs sell as presale; ShortShare of supplier
	// confirmations fall short of the presale stock listed.
	PresaleShare, ShortShare float64
	// Start is the event time of the first event.
	Start time.Time
}

func defaultGenConfig() genConfig {
	return genConfig{
		Seed: 1, Shops: 4, SKUsPerShop: 500, ZipfS: 1.1,
		DropEvery: 20_000, DropLen: 5_000, DropShare: 0.8,
		CancelShare: 0.04, ShipShare: 0.45, ShipDelay: 250 * time.Millisecond,
		RecountEvery: 2_000, ShrinkMax: 3,
		PresaleShare: 0.2, ShortShare: 0.3,
	}
}

func (c genConfig) check() error {
	switch {
	case c.Shops < 1 || c.Shops > shopsMax:
		return fmt.Errorf("shops %d: must be 1 to %d", c.Shops, shopsMax)
	case c.SKUsPerShop < 1 || c.SKUsPerShop > skusPerShopMax:
		return fmt.Errorf("skus %d: must be 1 to %d per shop", c.SKUsPerShop, skusPerShopMax)
	case c.ZipfS <= 1:
		return fmt.Errorf("zipf %g: must be greater than 1", c.ZipfS)
	case c.DropEvery < 1 || c.DropLen < 0 || c.DropLen > c.DropEvery:
		return fmt.Errorf("drop-every %d, drop-len %d: need drop-every ≥ 1 and 0 ≤ drop-len ≤ drop-every", c.DropEvery, c.DropLen)
	case c.CancelShare < 0 || c.ShipShare < 0 || c.CancelShare+c.ShipShare > 0.9:
		return fmt.Errorf("cancel %g + ship %g: shares must be ≥ 0 and leave room for sales (sum ≤ 0.9)", c.CancelShare, c.ShipShare)
	}
	return nil
}

// simSKU is the feed's own book of one SKU: what the platform shows and what
// the warehouse holds, as the merchant believes it.
type simSKU struct {
	shop, sku string
	presale   bool
	priceFen  int64
	listed    int64
	onHand    int64
}

type simOrder struct {
	sku *simSKU
	id  string
	at  time.Time
}

// generator produces a livestream order feed, deterministically from its
// seed. It is not safe for concurrent use.
type generator struct {
	c      genConfig
	rng    *rand.Rand
	zipf   *rand.Zipf
	skus   []*simSKU // shop-major: skus[shop*SKUsPerShop+i]
	setup  []ledger.Event
	open   []simOrder // oldest first; a ring would do, a slice is simpler
	n      int        // events generated after setup
	orders int
	clock  time.Time
	drop   *simSKU
}

func newGenerator(c genConfig) (*generator, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	if c.Start.IsZero() {
		c.Start = time.Now().UTC().Truncate(time.Second)
	}
	rng := rand.New(rand.NewPCG(c.Seed, c.Seed^0x5eed))
	g := &generator{c: c, rng: rng, clock: c.Start.UTC()}
	g.zipf = rand.NewZipf(rng, c.ZipfS, 1, uint64(c.SKUsPerShop-1))
	for shop := range c.Shops {
		for i := range c.SKUsPerShop {
			s := &simSKU{
				shop: fmt.Sprintf("shop-%02d", shop), sku: fmt.Sprintf("sku-%05d", i),
				presale:  rng.Float64() < c.PresaleShare,
				priceFen: 990 + 100*rng.Int64N(200),
			}
			g.skus = append(g.skus, s)
			g.setup = append(g.setup, g.listing(s)...)
		}
	}
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

// listing lists s with fresh stock; a presale SKU also gets supplier
// confirmations, which fall short of the stock listed ShortShare of the time.
func (g *generator) listing(s *simSKU) []ledger.Event {
	stock := 200 + g.rng.Int64N(5_000)
	e := g.event(s, ledger.Listing)
	e.Title, e.PriceFen, e.Stock = "item "+s.sku, s.priceFen, ledger.Int64(stock)
	s.listed = stock
	if !s.presale {
		e.SalesForm, e.ShipWithinHours = ledger.Spot, []int{24, 48, 72}[g.rng.IntN(3)]
		s.onHand = stock
		return []ledger.Event{e}
	}
	e.SalesForm, e.ShipWithinDays = ledger.Presale, 4+g.rng.IntN(87)
	return append([]ledger.Event{e}, g.confirm(s, stock)...)
}

// confirm has two suppliers confirm capacity for stock units in all.
func (g *generator) confirm(s *simSKU, stock int64) []ledger.Event {
	total := stock
	if g.rng.Float64() < g.c.ShortShare {
		total = stock * (50 + g.rng.Int64N(45)) / 100 // the factory cannot make it all
	}
	var out []ledger.Event
	for i, q := range []int64{total / 2, total - total/2} {
		e := g.event(s, ledger.CapacityConfirmed)
		e.Supplier, e.Qty = fmt.Sprintf("factory-%d", i+1), ledger.Int64(q)
		by := g.clock.AddDate(0, 0, 30)
		e.DeliverBy = &by
		out = append(out, e)
	}
	return out
}

// pick returns a SKU by popularity, or the dropped link's SKU while a drop
// runs.
func (g *generator) pick() *simSKU {
	if g.drop != nil && g.rng.Float64() < g.c.DropShare {
		return g.drop
	}
	shop := g.rng.IntN(g.c.Shops)
	return g.skus[shop*g.c.SKUsPerShop+int(g.zipf.Uint64())]
}

// Next appends the next events of the feed to out (one step: usually one
// event, a few when the merchant restocks or relists) and returns it.
func (g *generator) Next(out []ledger.Event) []ledger.Event {
	g.n++
	g.clock = g.clock.Add(eventStep)
	switch phase := g.n % g.c.DropEvery; {
	case phase == 0:
		g.drop = g.skus[g.rng.IntN(len(g.skus))]
	case phase == g.c.DropLen:
		g.drop = nil
	}
	if g.c.RecountEvery > 0 && g.n%g.c.RecountEvery == 0 {
		return g.recount(out, g.pick())
	}
	switch r := g.rng.Float64(); {
	case r < g.c.CancelShare && len(g.open) > 0:
		// A buyer cancels a recent order.
		i := len(g.open) - 1 - g.rng.IntN(min(len(g.open), 1000))
		o := g.open[i]
		g.open = append(g.open[:i], g.open[i+1:]...)
		e := g.event(o.sku, ledger.Cancel)
		e.OrderID = o.id
		o.sku.listed++ // the platform puts the unit back
		return append(out, e)
	case r < g.c.CancelShare+g.c.ShipShare && len(g.open) > 0 && g.clock.Sub(g.open[0].at) >= g.c.ShipDelay:
		return g.ship(out)
	}
	if len(g.open) >= openOrdersMax {
		return g.ship(out)
	}
	return g.sale(out, g.pick())
}

func (g *generator) ship(out []ledger.Event) []ledger.Event {
	o := g.open[0]
	g.open = g.open[1:]
	e := g.event(o.sku, ledger.Shipment)
	e.OrderID = o.id
	if !o.sku.presale {
		o.sku.onHand--
	}
	return append(out, e)
}

// sale sells one unit of s when the platform shows stock; when it shows none,
// the merchant restocks (spot) or confirms more capacity (presale) and sets
// the stock again, as a host would before the next link.
func (g *generator) sale(out []ledger.Event, s *simSKU) []ledger.Event {
	if s.listed <= 0 {
		more := 500 + g.rng.Int64N(5_000)
		if s.presale {
			out = append(out, g.confirm(s, more)...)
		} else {
			e := g.event(s, ledger.Restock)
			e.Qty = ledger.Int64(more)
			out = append(out, e)
			s.onHand += more
		}
		e := g.event(s, ledger.StockSet)
		e.Stock = ledger.Int64(more)
		s.listed = more
		return append(out, e)
	}
	g.orders++
	e := g.event(s, ledger.Sale)
	e.OrderID = fmt.Sprintf("ks-%d-%d", g.c.Seed, g.orders)
	e.Qty, e.UnitPriceFen, e.LiveID = ledger.Int64(1), s.priceFen, "live-"+s.shop
	s.listed--
	g.open = append(g.open, simOrder{sku: s, id: e.OrderID, at: g.clock})
	return append(out, e)
}

// recount counts a spot SKU and finds a little less than the book: shrinkage.
func (g *generator) recount(out []ledger.Event, s *simSKU) []ledger.Event {
	if s.presale {
		return g.sale(out, s)
	}
	shrink := g.rng.Int64N(g.c.ShrinkMax + 1)
	e := g.event(s, ledger.Recount)
	e.Counted, e.CountedBy = ledger.Int64(max(0, s.onHand-shrink)), "warehouse"
	s.onHand = max(0, s.onHand-shrink)
	return append(out, e)
}
