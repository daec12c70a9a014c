package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"stockledger/ledger"
)

// Hot-row baseline bounds.
const (
	// hotrowSalesMax bounds the sales the hot-row phase prepares.
	hotrowSalesMax = 2_000_000
)

// benchHotrow measures the usual alternative: one stock row per SKU, each
// sale of the same feed one transaction that takes the units off the row if
// enough are left.
func benchHotrow(ctx context.Context, bc benchConfig, schema string, r *modeResult) error {
	pool, err := openHotrowPool(ctx, bc.databaseURL, schema, bc.sz.HotrowClients)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE hotrow_stock (sku text PRIMARY KEY, qty bigint NOT NULL)`); err != nil {
		return err
	}
	g, err := newGenerator(bc.gen)
	if err != nil {
		return err
	}
	if err := stockHotrow(ctx, pool, g); err != nil {
		return err
	}
	sales := hotrowSales(g, bc.sz.HotrowSeconds)
	duration := time.Duration(bc.sz.HotrowSeconds * float64(time.Second))
	ops, err := runHotrowClients(ctx, pool, sales, bc.sz.HotrowClients, duration)
	if err != nil {
		return err
	}
	r.HotrowOps = ops
	return nil
}

// openHotrowPool opens a pool to url of at most one connection per client,
// with schema as the search path.
func openHotrowPool(ctx context.Context, url, schema string, clients int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(clients)
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	return pgxpool.NewWithConfig(ctx, cfg)
}

// stockHotrow inserts the stock row of each of g's SKUs.
func stockHotrow(ctx context.Context, pool *pgxpool.Pool, g *generator) error {
	// Every SKU starts with more units than the run can sell, so that every
	// order takes the row lock and changes it (the costly path).
	var keys []string
	for _, s := range g.skus {
		keys = append(keys, s.shop+"/"+s.sku)
	}
	_, err := pool.Exec(ctx, `INSERT INTO hotrow_stock SELECT unnest($1::text[]), 1000000000`, keys)
	return err
}

// hotrowSale is one sale of the feed as the hot-row baseline applies it.
type hotrowSale struct {
	key string
	qty int64
}

// hotrowSales takes the sales of g's feed, enough for seconds of the phase
// and at most hotrowSalesMax. A re-sent sale is left out: the baseline
// applies each order line once, as if it kept the keys for free.
func hotrowSales(g *generator, seconds float64) []hotrowSale {
	var sales []hotrowSale
	seen := make(map[string]struct{}) // at most hotrowSalesMax keys
	buf := make([]ledger.Event, 0, stepEventsMax)
	for len(sales) < hotrowSalesMax && len(sales) < int(seconds*50_000) {
		buf = g.Next(buf[:0])
		for _, e := range buf {
			if e.Type != ledger.Sale {
				continue
			}
			if _, ok := seen[e.Key()]; ok {
				continue
			}
			seen[e.Key()] = struct{}{}
			sales = append(sales, hotrowSale{e.Shop + "/" + e.SKU, *e.Qty})
		}
	}
	return sales
}

// runHotrowClients applies sales in order from clients goroutines, each
// sale one UPDATE, until duration has passed or the sales run out, and
// returns the sales applied per second.
func runHotrowClients(ctx context.Context, pool *pgxpool.Pool, sales []hotrowSale, clients int, duration time.Duration) (float64, error) {
	var next, done atomic.Int64
	deadline := time.Now().Add(duration)
	var wg sync.WaitGroup
	errc := make(chan error, clients)
	begin := time.Now()
	for range clients {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				i := next.Add(1) - 1
				if i >= int64(len(sales)) {
					return
				}
				s := sales[i]
				if _, err := pool.Exec(ctx, `UPDATE hotrow_stock SET qty = qty - $1 WHERE sku = $2 AND qty >= $1`, s.qty, s.key); err != nil {
					errc <- err
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	select {
	case err := <-errc:
		return 0, err
	default:
	}
	return float64(done.Load()) / elapsed.Seconds(), nil
}
