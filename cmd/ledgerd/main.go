// Command ledgerd is the stock ledger service: it runs (or joins) NATS
// JetStream, keeps the read model with the projector, and serves the HTTP
// API. With no settings it needs nothing else: an embedded NATS server stores
// the stream under ./data and the read model lives in memory, rebuilt from
// the stream at start.
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
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "ledgerd:", err)
		os.Exit(1)
	}
}
