// Command feedsim is a livestream order-feed simulator and the ledger's
// benchmark.
//
//	feedsim [flags]        publish a feed to a running ledgerd over NATS
//	feedsim bench [flags]  measure the ledger against the engine's limit and
//	                       a hot-row Postgres design, in both durability modes
//
// The feed is shaped like the platforms' (contract v2): several shops, SKU
// popularity skewed by a Zipf law, link drops (one SKU takes most orders for
// a while), carts of several SKUs under one order id (some Douyin-style, with
// a parent order id), lines of several units, sales with the platform's
// ship_by, cancels of whole lines and partial refunds, shipments after a
// delay, whole or in packages with waybills, delay filings that move a
// line's promise, returns after shipment (some units failing inspection),
// restocks with goods receipts, recounts that find shrinkage, safety stock,
// presale SKUs whose supplier confirmations sometimes fall short, and
// re-sends: a share of events published again, identical, long after (as
// platform pushes repeat). The same seed gives the same events (with -start
// fixed, byte for byte).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "feedsim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string) error {
	if len(args) > 0 && args[0] == "bench" {
		return runBench(ctx, args[1:], getenv)
	}
	return runFeed(ctx, args, getenv)
}
