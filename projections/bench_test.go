package projections_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"stockledger/ledger"
	"stockledger/projections"
	"stockledger/projections/pgtest"
)

// benchSKUs and benchBatch shape the benchmarks' workload: a flash sale over
// a few hundred SKUs, committed in batches as the projector does.
const (
	benchSKUs  = 300
	benchBatch = 1000
)

// benchListed returns benchSKUs SKUs listed as spot with plenty of stock.
func benchListed(b *testing.B) []*projections.SKU {
	b.Helper()
	skus := make([]*projections.SKU, benchSKUs)
	for i := range skus {
		s := projections.NewSKU(foldShop, fmt.Sprintf("sku-%04d", i))
		e := withSKU(evListSpot(0, 1_000_000_000, 9900, 48), s.SKU)
		e.Shop, e.ID = foldShop, foldEventID(uint64(i+1))
		if _, err := s.Apply(uint64(i+1), &e); err != nil {
			b.Fatal(err)
		}
		skus[i] = s
	}
	return skus
}

// benchSale is the n-th sale of the workload: SKU n mod benchSKUs (squared,
// so a few SKUs take most sales, as in a link drop).
func benchSale(n int, skus []*projections.SKU) (*projections.SKU, ledger.Event) {
	i := (n * n / 7) % len(skus)
	s := skus[i]
	e := evSale(time.Duration(n)*time.Millisecond, fmt.Sprintf("o-%d", n), 1, 9900)
	e.Shop, e.SKU, e.ID = foldShop, s.SKU, foldEventID(uint64(n))
	return s, e
}

// BenchmarkFoldSale folds sales into in-memory SKU states: the projector's
// CPU cost per event before any I/O.
func BenchmarkFoldSale(b *testing.B) {
	skus := benchListed(b)
	events := make([]ledger.Event, b.N)
	targets := make([]*projections.SKU, b.N)
	for n := range b.N {
		targets[n], events[n] = benchSale(n+benchSKUs+1, skus)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := range b.N {
		if _, err := targets[n].Apply(uint64(n+benchSKUs+1), &events[n]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFoldSaleOversold folds a flash sale past real stock into one SKU
// that holds 20 units and 20,000 open orders: every sale raises or updates
// oversold and phantom_stock, whose exposure serves the open orders oldest
// first.
func BenchmarkFoldSaleOversold(b *testing.B) {
	const openOrders = 20_000
	s := projections.NewSKU(foldShop, "hot")
	e := withSKU(evListSpot(0, 20, 9900, 48), s.SKU)
	e.Shop, e.ID = foldShop, foldEventID(1)
	if _, err := s.Apply(1, &e); err != nil {
		b.Fatal(err)
	}
	seq := uint64(1)
	sale := func(n int) {
		seq++
		e := evSale(time.Duration(n)*time.Millisecond, fmt.Sprintf("o-%d", n), 1, 9900)
		e.Shop, e.SKU, e.ID = foldShop, s.SKU, foldEventID(seq)
		if _, err := s.Apply(seq, &e); err != nil {
			b.Fatal(err)
		}
	}
	for n := range openOrders {
		sale(n)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := range b.N {
		sale(openOrders + n)
	}
}

// BenchmarkPostgresCommit commits batches of benchBatch sales (the SKUs they
// change, their orders, the checkpoint) to the Postgres store; events/s is
// sales committed per second.
func BenchmarkPostgresCommit(b *testing.B) {
	url, schema := pgtest.Open(b)
	store, err := projections.OpenPostgres(b.Context(), url, projections.PostgresOptions{Schema: schema})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(store.Close)
	skus := benchListed(b)
	seq := uint64(benchSKUs)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		prev := seq
		changed := map[*projections.SKU]bool{}
		var list []*projections.SKU
		var alerts []projections.Alert
		for range benchBatch {
			seq++
			s, e := benchSale(int(seq), skus)
			as, err := s.Apply(seq, &e)
			if err != nil {
				b.Fatal(err)
			}
			alerts = append(alerts, as...)
			if !changed[s] {
				changed[s] = true
				list = append(list, s)
			}
		}
		if prev == benchSKUs {
			list = skus // the first batch writes every SKU
		}
		err := projections.Commit(b.Context(), store, &projections.Batch{Projector: "bench", PrevSeq: prev - benchSKUs, LastSeq: seq - benchSKUs, SKUs: list, Alerts: alerts})
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range list {
			s.ClearDirty()
		}
	}
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkPostgresLoadSKUs reads benchSKUs committed SKUs back, as a
// projector starting on an existing read model does: one LoadSKU each
// (the projector's way until LoadSKUs) or one LoadSKUs for all. skus/s is
// SKUs read per second.
func BenchmarkPostgresLoadSKUs(b *testing.B) {
	url, schema := pgtest.Open(b)
	store, err := projections.OpenPostgres(b.Context(), url, projections.PostgresOptions{Schema: schema})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(store.Close)
	skus := benchListed(b)
	if err := projections.Commit(b.Context(), store, &projections.Batch{Projector: "bench", LastSeq: 1, SKUs: skus}); err != nil {
		b.Fatal(err)
	}
	keys := make([]projections.SKUKey, len(skus))
	for i, s := range skus {
		keys[i] = projections.SKUKey{Shop: s.Shop, SKU: s.SKU}
	}
	b.Run("one-by-one", func(b *testing.B) {
		for range b.N {
			for _, k := range keys {
				if s, err := store.LoadSKU(b.Context(), k.Shop, k.SKU); err != nil || s == nil {
					b.Fatalf("LoadSKU(%v) = %v, %v", k, s, err)
				}
			}
		}
		b.ReportMetric(float64(b.N*len(keys))/b.Elapsed().Seconds(), "skus/s")
	})
	b.Run("at-once", func(b *testing.B) {
		for range b.N {
			if got, err := store.LoadSKUs(b.Context(), keys); err != nil || len(got) != len(keys) {
				b.Fatalf("LoadSKUs: %d of %d, %v", len(got), len(keys), err)
			}
		}
		b.ReportMetric(float64(b.N*len(keys))/b.Elapsed().Seconds(), "skus/s")
	})
}

// BenchmarkLoadLineFilter reads the line filter of a store holding a million
// lines: what a projector's first batch waits for at start.
func BenchmarkLoadLineFilter(b *testing.B) {
	const lines = 1_000_000
	url, schema := pgtest.Open(b)
	store, err := projections.OpenPostgres(b.Context(), url, projections.PostgresOptions{Schema: schema})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(store.Close)
	conn, err := pgx.Connect(b.Context(), url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(b.Context(), `INSERT INTO `+pgx.Identifier{schema, "lines"}.Sanitize()+`
		SELECT 'shop-1', 'sku-' || (i % 300), 'o-' || i, 'p-' || i, 1, 9900, 'spot', now(), NULL, i, 0, 0, 0,
			false, NULL, 'open', '' FROM generate_series(1, $1::int) AS i`, lines)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(b.Context(), `VACUUM ANALYZE `+pgx.Identifier{schema, "lines"}.Sanitize()); err != nil {
		b.Fatal(err)
	}
	var f *projections.LineFilter
	for b.Loop() {
		if f, err = projections.LoadLineFilter(b.Context(), store); err != nil {
			b.Fatal(err)
		}
	}
	if f.Keys() != lines || !f.MayHoldAdd(projections.LineKey{Shop: "shop-1", SKU: "sku-7", OrderID: "o-7"}) {
		b.Fatalf("filter of %d keys, want %d holding o-7", f.Keys(), lines)
	}
	b.ReportMetric(float64(b.N*lines)/b.Elapsed().Seconds(), "lines/s")
	b.ReportMetric(float64(f.Bytes()), "filter-bytes")
}
