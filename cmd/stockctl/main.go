// Command stockctl is the command-line client of ledgerd for merchants and
// operators: send events, show a SKU or a shop's stock, list alerts, follow
// the live feed, read a SKU's history, and stop selling a product at once
// (set-zero). Output is a table for people, or JSON with -json for scripts.
// Errors from the service are printed as the service wrote them.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "stockctl:", err)
		os.Exit(1)
	}
}

const usage = `usage: stockctl COMMAND [flags] [args]

commands:
  send      send events: flags per field (-type sale -shop S -sku K -order-id O -qty 1 ...),
            or -f FILE with one event, an array, or one event per line ('-' reads stdin);
            more than 1000 events go in batches of 1000, each all or nothing
  set-zero  SHOP SKU: set the platform stock to 0 (stop selling now)
  sku       SHOP SKU [-as-of RFC3339]: one SKU's figures (now, or at a past moment)
  stock     SHOP: the shop's SKUs as a table
  alerts    SHOP [-state open|resolved|all]: alerts, most money at risk first
  history   SHOP SKU [-after-seq N] [-limit N]: the SKU's events from the stream
  follow    SHOP [-last-event-id N]: follow the live feed until interrupted

flags of every command:
  -addr URL   ledgerd's HTTP address (STOCKCTL_ADDR, default http://127.0.0.1:8080)
  -json       JSON output for scripts
`

// run is stockctl with its environment passed in, for tests.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return fmt.Errorf("no command given")
		}
		return nil
	}
	c := &cli{stdin: stdin, stdout: stdout}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "send":
		return c.send(ctx, rest, getenv)
	case "set-zero":
		return c.setZero(ctx, rest, getenv)
	case "sku":
		return c.sku(ctx, rest, getenv)
	case "stock":
		return c.stock(ctx, rest, getenv)
	case "alerts":
		return c.alerts(ctx, rest, getenv)
	case "history":
		return c.history(ctx, rest, getenv)
	case "follow":
		return c.follow(ctx, rest, getenv)
	}
	return fmt.Errorf("unknown command %q (commands: send, set-zero, sku, stock, alerts, history, follow; stockctl help)", cmd)
}
