// Command stockctl is the command-line client of ledgerd for merchants and
// operators: send events, show a SKU or a shop's stock and health, list
// alerts, follow the live feed, read a SKU's history, stop selling a product
// at once (set-zero), and apply the ledger's stock sync instructions to a
// platform figure kept by hand (sync, the reference adapter). Output is a table for people, or JSON with -json for scripts.
// Errors from the service are printed as the service wrote them.
package main

import (
	"context"
	"errors"
	"flag"
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

const usage = `usage: stockctl [-addr URL] [-json] COMMAND [flags] [args]

commands:
  send      send events: flags per field (-type sale -shop S -sku K -order-id O -qty 1 ...),
            or -f FILE with one event, an array, or one event per line ('-' reads stdin);
            more than 1000 events go in batches of 1000, each all or nothing
  set-zero  SHOP SKU: set the platform stock to 0 (stop selling now)
  sku       SHOP SKU [-as-of RFC3339]: one SKU's figures (now, or at a past moment)
  stock     SHOP: the shop's SKUs as a table
  alerts    SHOP [-state open|resolved|all]: alerts, most money at risk first
  history   SHOP SKU [-after-seq N] [-limit N]: the SKU's events from the stream,
            those the projector refused marked with the reason
  follow    SHOP [-last-event-id N]: follow the live feed until interrupted
  shop      SHOP [-min-seq N]: the shop's health (open, late, unserved lines, at-risk
            percentage, the open fulfilment_risk alert) and its pending stock sync
  sync      SHOP [-mode down|full] [-nats-url URL] [-once]: the reference adapter: follow
            the shop's stock sync instructions (durable consumer stockctl-sync-SHOP on
            NATS_URL, default nats://127.0.0.1:4222) and post the stock_set the platform
            would confirm; down (default) only lowers the platform figure, full also
            raises it; -once applies what is pending and exits
  help      this text (also -h, --help); stockctl COMMAND -h lists a command's flags

flags of every command, before or after it:
  -addr URL   ledgerd's HTTP address (STOCKCTL_ADDR, default http://127.0.0.1:8080)
  -json       JSON output for scripts
`

// defaultAddr is ledgerd's address when -addr is not given.
const defaultAddr = "http://127.0.0.1:8080"

// run is stockctl with its environment passed in, for tests. Flags before
// the command (-addr, -json) are the defaults of the command's own.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout io.Writer) error {
	c := &cli{stdin: stdin, stdout: stdout, addr: getenv("STOCKCTL_ADDR"), getenv: getenv}
	if c.addr == "" {
		c.addr = defaultAddr
	}
	global := flag.NewFlagSet("stockctl", flag.ContinueOnError)
	global.SetOutput(io.Discard) // errors are returned; help prints the usage below
	global.StringVar(&c.addr, "addr", c.addr, "")
	global.BoolVar(&c.json, "json", false, "")
	err := global.Parse(args)
	if errors.Is(err, flag.ErrHelp) || (err == nil && global.Arg(0) == "help") {
		_, err = fmt.Fprint(stdout, usage)
		return err
	}
	if err != nil {
		return fmt.Errorf("%w (stockctl help)", err)
	}
	if global.NArg() == 0 {
		fmt.Fprint(stdout, usage)
		return errors.New("no command given")
	}
	err = c.command(ctx, global.Arg(0), global.Args()[1:])
	if errors.Is(err, flag.ErrHelp) {
		return nil // the command's flags were listed
	}
	return err
}

// command runs one command with its arguments.
func (c *cli) command(ctx context.Context, cmd string, args []string) error {
	switch cmd {
	case "send":
		return c.send(ctx, args)
	case "set-zero":
		return c.setZero(ctx, args)
	case "sku":
		return c.sku(ctx, args)
	case "stock":
		return c.stock(ctx, args)
	case "alerts":
		return c.alerts(ctx, args)
	case "history":
		return c.history(ctx, args)
	case "follow":
		return c.follow(ctx, args)
	case "shop":
		return c.shop(ctx, args)
	case "sync":
		return c.sync(ctx, args)
	}
	return fmt.Errorf("unknown command %q (commands: send, set-zero, sku, stock, alerts, history, follow, shop, sync; stockctl help)", cmd)
}
