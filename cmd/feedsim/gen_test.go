package main

import (
	"bytes"
	"testing"
	"time"

	"stockledger/ledger"
	"stockledger/projections"
)

var genT0 = time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)

// feed returns the setup and the next steps events of a generator.
func feed(t *testing.T, c genConfig, steps int) (*generator, []ledger.Event) {
	t.Helper()
	g, err := newGenerator(c)
	if err != nil {
		t.Fatalf("newGenerator: %v", err)
	}
	events := append([]ledger.Event(nil), g.Setup()...)
	for range steps {
		events = g.Next(events)
	}
	return g, events
}

func encodeAll(t *testing.T, events []ledger.Event) []byte {
	t.Helper()
	var b bytes.Buffer
	for i := range events {
		data, err := ledger.EncodeEvent(&events[i])
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func smallConfig(seed uint64) genConfig {
	c := defaultGenConfig()
	c.Seed, c.Shops, c.SKUsPerShop, c.Start = seed, 3, 40, genT0
	c.DropEvery, c.DropLen, c.RecountEvery = 2_000, 1_000, 300
	return c
}

func TestGeneratorDeterministic(t *testing.T) {
	_, a := feed(t, smallConfig(7), 5_000)
	_, b := feed(t, smallConfig(7), 5_000)
	if !bytes.Equal(encodeAll(t, a), encodeAll(t, b)) {
		t.Fatal("two feeds of seed 7 differ")
	}
	_, c := feed(t, smallConfig(8), 5_000)
	if bytes.Equal(encodeAll(t, a), encodeAll(t, c)) {
		t.Fatal("feeds of seeds 7 and 8 are the same")
	}
}

// TestGeneratorFeed checks that every event is valid, that the feed has every
// part the simulator promises, and that the ledger's fold agrees with the
// feed's own book of each SKU: listed and on_hand.
func TestGeneratorFeed(t *testing.T) {
	const steps = 80_000
	c := smallConfig(3)
	g, events := feed(t, c, steps)
	types := map[ledger.Type]int{}
	skus := map[projections.SKUKey]*projections.SKU{}
	short := 0
	stockOf := map[projections.SKUKey]int64{}
	for i := range events {
		e := &events[i]
		if err := e.Validate(); err != nil {
			t.Fatalf("event %d (%s): %v", i, e.Type, err)
		}
		if e.At.After(genT0.Add(time.Duration(steps+1) * eventStep)) {
			t.Fatalf("event %d at %s: after the feed's clock", i, e.At)
		}
		types[e.Type]++
		k := projections.SKUKey{Shop: e.Shop, SKU: e.SKU}
		if e.Type == ledger.Listing {
			stockOf[k] = *e.Stock
		}
		s := skus[k]
		if s == nil {
			s = projections.NewSKU(e.Shop, e.SKU)
			skus[k] = s
		}
		if _, err := s.Apply(uint64(i+1), e); err != nil {
			t.Fatalf("fold event %d (%s): %v", i, e.Type, err)
		}
	}
	for _, typ := range ledger.Types {
		if typ == ledger.Delisting {
			continue // the feed never delists
		}
		if types[typ] == 0 {
			t.Errorf("no %s event in %d steps; counts %v", typ, steps, types)
		}
	}
	for k, s := range skus {
		if s.SalesForm == ledger.Presale && s.Capacity < stockOf[k] && s.Capacity > 0 {
			short++
		}
	}
	if short == 0 {
		t.Error("no presale SKU with supplier capacity short of its stock")
	}
	for _, s := range g.skus {
		f := skus[projections.SKUKey{Shop: s.shop, SKU: s.sku}]
		if f.Listed != s.listed {
			t.Errorf("%s/%s: listed %d in the fold, %d in the feed's book", s.shop, s.sku, f.Listed, s.listed)
		}
		if !s.presale && f.OnHand != s.onHand {
			t.Errorf("%s/%s: on_hand %d in the fold, %d in the feed's book", s.shop, s.sku, f.OnHand, s.onHand)
		}
	}
}

// TestGeneratorLinkDrop checks that during a link drop one SKU takes most
// sales, and outside it none does.
func TestGeneratorLinkDrop(t *testing.T) {
	c := smallConfig(5)
	g, err := newGenerator(c)
	if err != nil {
		t.Fatal(err)
	}
	topShare := func(from, to int) float64 {
		counts := map[string]int{}
		total := 0
		var buf []ledger.Event
		for g.n < to {
			buf = g.Next(buf[:0])
			if g.n <= from {
				continue
			}
			for _, e := range buf {
				if e.Type == ledger.Sale {
					counts[e.Shop+"/"+e.SKU]++
					total++
				}
			}
		}
		top := 0
		for _, n := range counts {
			top = max(top, n)
		}
		return float64(top) / float64(max(1, total))
	}
	// The first drop runs over steps DropEvery .. DropEvery+DropLen.
	if share := topShare(c.DropLen, c.DropEvery); share > 0.5 {
		t.Errorf("before the drop, the top SKU took %.0f%% of sales", 100*share)
	}
	if share := topShare(c.DropEvery, c.DropEvery+c.DropLen); share < 0.6 {
		t.Errorf("during the drop, the top SKU took %.0f%% of sales, want most (drop share %.0f%%)", 100*share, 100*c.DropShare)
	}
}

func TestGeneratorConfigRefused(t *testing.T) {
	for name, mod := range map[string]func(*genConfig){
		"no shops":   func(c *genConfig) { c.Shops = 0 },
		"flat zipf":  func(c *genConfig) { c.ZipfS = 1 },
		"long drop":  func(c *genConfig) { c.DropLen = c.DropEvery + 1 },
		"all cancel": func(c *genConfig) { c.CancelShare = 0.95 },
	} {
		c := defaultGenConfig()
		mod(&c)
		if _, err := newGenerator(c); err == nil {
			t.Errorf("%s: newGenerator accepted %+v", name, c)
		}
	}
}
