// Command feedsim is a livestream order-feed simulator and the ledger's
// benchmark.
//
//	feedsim [flags]        publish a feed to a running ledgerd over NATS
//	feedsim bench [flags]  measure the ledger against the engine's limit and
//	                       a hot-row Postgres design, in both durability modes
//
// The feed has several shops, SKU popularity skewed by a Zipf law, link drops
// (one SKU takes most sales for a while), cancellations, shipments after a
// delay, recounts that find shrinkage, and presale SKUs whose supplier
// confirmations sometimes fall short. The same seed gives the same events
// (with -start fixed, byte for byte).
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
