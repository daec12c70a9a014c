package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"stockledger/consumers"
	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// Feed bounds.
const (
	// rateMax bounds -rate (events per second): one publish call of at most
	// ledger.MaxBatch events per tick.
	rateMax = 100_000
	// durationMax bounds -duration.
	durationMax = 24 * time.Hour
	// tick is how often the feed publishes the events due since the last
	// tick; at rate r a tick carries r/100 events.
	tick = 10 * time.Millisecond
	// progressEvery is how often the progress line is printed.
	progressEvery = time.Second
	// openAlertsMax bounds the open alert ids the progress line tracks.
	openAlertsMax = 1_000_000
)

// genFlags registers the feed-shaping flags on fs.
func genFlags(fs *flag.FlagSet, c *genConfig, start *string) {
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the feed: the same seed gives the same events")
	fs.IntVar(&c.Shops, "shops", c.Shops, "number of shops")
	fs.IntVar(&c.SKUsPerShop, "skus", c.SKUsPerShop, "SKUs per shop")
	fs.Float64Var(&c.ZipfS, "zipf", c.ZipfS, "Zipf skew of SKU popularity (> 1)")
	fs.IntVar(&c.DropEvery, "drop-every", c.DropEvery, "a link drop starts every N steps (about one event each)")
	fs.IntVar(&c.DropLen, "drop-len", c.DropLen, "a link drop lasts N steps")
	fs.Float64Var(&c.DropShare, "drop-share", c.DropShare, "share of orders the dropped link takes")
	fs.Float64Var(&c.ResendShare, "resend-share", c.ResendShare, "share of events published again, identical, -resend-after steps later (a platform push repeated)")
	fs.IntVar(&c.ResendAfter, "resend-after", c.ResendAfter, "steps (about one event each) until a re-send; when that is longer than the stream's duplicate window (LEDGER_DUPLICATE_WINDOW, 10s by default) at the rate used, the fold's once-forever rule keeps the re-send out")
	fs.StringVar(start, "start", "", "event time of the first event, RFC 3339 (default: now); fix it for byte-identical feeds")
}

func parseStart(c *genConfig, start string) error {
	if start == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339, start)
	if err != nil {
		return fmt.Errorf("-start %q: must be an RFC 3339 time: %w", start, err)
	}
	c.Start = t
	return nil
}

// runFeed publishes a feed at a bounded rate for a bounded time to a running
// ledgerd, printing a progress line every second.
func runFeed(ctx context.Context, args []string, getenv func(string) string) error {
	c := defaultGenConfig()
	var (
		start, natsURL string
		rate           int
		duration       time.Duration
	)
	fs := flag.NewFlagSet("feedsim", flag.ContinueOnError)
	genFlags(fs, &c, &start)
	natsDefault := getenv("NATS_URL")
	if natsDefault == "" {
		natsDefault = "nats://127.0.0.1:4222"
	}
	fs.StringVar(&natsURL, "nats-url", natsDefault, "NATS server of the ledger (NATS_URL)")
	fs.IntVar(&rate, "rate", 2000, fmt.Sprintf("events per second, at most %d", rateMax))
	fs.DurationVar(&duration, "duration", 30*time.Second, fmt.Sprintf("how long to publish, at most %s", durationMax))
	if err := fs.Parse(args); err != nil {
		return err
	}
	if rate < 1 || rate > rateMax {
		return fmt.Errorf("-rate %d: must be 1 to %d", rate, rateMax)
	}
	if duration <= 0 || duration > durationMax {
		return fmt.Errorf("-duration %s: must be above 0 and at most %s", duration, durationMax)
	}
	if err := parseStart(&c, start); err != nil {
		return err
	}
	g, err := newGenerator(c)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(natsURL, nats.Name("feedsim"))
	if err != nil {
		return fmt.Errorf("connect to NATS %s (-nats-url): %w", natsURL, err)
	}
	defer nc.Close()
	pub, err := transport.NewPublisher(nc, transport.PublisherOptions{})
	if err != nil {
		return err
	}
	alerts, err := watchAlerts(nc)
	if err != nil {
		return err
	}
	defer alerts.stop()
	lag := func() string {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		cons, err := pub.JetStream().Consumer(cctx, transport.EventStream, consumers.DefaultName)
		if err != nil {
			return "?"
		}
		info, err := cons.Info(cctx)
		if err != nil {
			return "?"
		}
		return fmt.Sprint(info.NumPending + uint64(info.NumAckPending))
	}
	fmt.Fprintf(os.Stderr, "feedsim: seed %d, %d shops × %d SKUs, %d events/s for %s to %s\n", c.Seed, c.Shops, c.SKUsPerShop, rate, duration, natsURL)
	_, err = publishPaced(ctx, pub, g, rate, duration, 0, os.Stderr, lag, alerts.open)
	return err
}

// publishPaced publishes the setup, then rate events per second for
// duration (or maxEvents when that is above 0, whichever ends first), and
// prints a progress line to w. onAck, when set, sees every event with its
// ack. It returns the events published.
func publishPaced(ctx context.Context, pub *transport.Publisher, g *generator, rate int, duration time.Duration, maxEvents int,
	w io.Writer, lag func() string, openAlerts func() int, onAck ...func(ledger.Event, transport.Ack, time.Time)) (int, error) {
	published := 0
	send := func(events []ledger.Event) error {
		for len(events) > 0 {
			n := min(len(events), ledger.MaxBatch)
			at := time.Now()
			acks, err := pub.Publish(ctx, events[:n])
			if err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			for _, f := range onAck {
				for i := range acks {
					f(events[i], acks[i], at)
				}
			}
			published += n
			events = events[n:]
		}
		return nil
	}
	if err := send(g.Setup()); err != nil {
		return published, err
	}
	begin := time.Now()
	t := time.NewTicker(tick)
	defer t.Stop()
	lastPrint, lastCount := begin, published
	due := 0.0
	buf := make([]ledger.Event, 0, ledger.MaxBatch)
	for time.Since(begin) < duration && (maxEvents <= 0 || published < maxEvents) {
		select {
		case <-ctx.Done():
			return published, nil
		case <-t.C:
		}
		// A tick carries at most one publish call; what a tick cannot
		// carry is not owed later (the rate is a bound, not a quota). A
		// step makes up to stepEventsMax events (a cart, a relist,
		// re-sends): the rate counts events, not steps.
		due = min(due+float64(rate)*tick.Seconds(), float64(ledger.MaxBatch))
		buf = buf[:0]
		for due >= 1 && len(buf) <= ledger.MaxBatch-stepEventsMax {
			n := len(buf)
			buf = g.Next(buf)
			due -= float64(max(1, len(buf)-n))
		}
		if err := send(buf); err != nil {
			return published, err
		}
		if now := time.Now(); now.Sub(lastPrint) >= progressEvery && w != nil {
			eps := float64(published-lastCount) / now.Sub(lastPrint).Seconds()
			fmt.Fprintf(w, "feedsim: %8d events  %8.0f events/s  projector lag %s  open alerts %d\n", published, eps, lag(), openAlerts())
			lastPrint, lastCount = now, published
		}
	}
	return published, nil
}

// alertWatch follows alert changes on stock.alerts.> and counts the alerts
// open among those it has seen change.
type alertWatch struct {
	sub  *nats.Subscription
	mu   sync.Mutex
	ids  map[string]struct{}
	seen int
}

func watchAlerts(nc *nats.Conn) (*alertWatch, error) {
	w := &alertWatch{ids: make(map[string]struct{})}
	sub, err := nc.Subscribe(transport.AlertSubjectRoot+".>", func(m *nats.Msg) {
		var a projections.Alert
		if json.Unmarshal(m.Data, &a) != nil {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.seen++
		if a.State == projections.AlertOpen && len(w.ids) < openAlertsMax {
			w.ids[a.ID] = struct{}{}
		} else {
			delete(w.ids, a.ID)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to alerts: %w", err)
	}
	w.sub = sub
	return w, nil
}

func (w *alertWatch) open() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ids)
}

// changes returns how many alert changes arrived.
func (w *alertWatch) changes() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}

func (w *alertWatch) stop() { _ = w.sub.Unsubscribe() }
