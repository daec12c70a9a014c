package consumers

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/consumers/consumertest"
	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// faultNATS runs an in-process nats-server with the ledger's streams.
func faultNATS(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return consumertest.StartNATS(t, 256<<20)
}

// backgroundFeed publishes sales of shop-bg with the order-feed publisher
// until the returned stop is called; stop returns the acknowledged ids.
func backgroundFeed(t *testing.T, pub *transport.Publisher) (stop func() map[string]bool) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	acked := map[string]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i += 50 {
			var events []ledger.Event
			if i == 0 {
				events = append(events, ledger.Event{Type: ledger.Listing, Shop: "shop-bg", SKU: "bg", Title: "t", PriceFen: 500,
					Stock: ledger.Int64(100), SalesForm: ledger.Spot, ShipWithinHours: 72})
			}
			for j := i; j < i+50; j++ {
				events = append(events, ledger.Event{Type: ledger.Sale, Shop: "shop-bg", SKU: "bg", OrderID: fmt.Sprintf("bg-%d", j),
					Qty: ledger.Int64(1), UnitPriceFen: 500})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			acks, err := pub.Publish(ctx, events)
			cancel()
			if err != nil {
				t.Errorf("background feed: %v", err)
				return
			}
			for _, a := range acks {
				acked[a.ID] = true
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() map[string]bool {
		close(done)
		wg.Wait()
		return acked
	}
}

// checkStore compares every SKU view of store with a fresh fold of the
// stream and, unless acked is nil, checks that each acknowledged id is
// stored once; it returns the figures and the fold.
func checkStore(t *testing.T, js jetstream.JetStream, p *Projector, store projections.Store, acked map[string]bool) (consumertest.Figures, *consumertest.Ledger) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := consumertest.Read(ctx, js, p.o.Fold)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitApplied(ctx, l.LastSeq); err != nil {
		t.Fatal(err)
	}
	var figs consumertest.Figures
	var problems []string
	if acked != nil { // nil: the caller counts copies itself
		figs, problems = l.CheckAcked(acked)
	}
	for k, s := range l.SKUs {
		v, err := store.SKU(ctx, k.Shop, k.SKU)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s/%s: %v", k.Shop, k.SKU, err))
			continue
		}
		if d := consumertest.CompareView(s.View(), v); d != "" {
			problems = append(problems, d)
		}
	}
	if len(problems) > 0 {
		t.Errorf("%d problems:\n%s", len(problems), consumertest.Join(problems, 20))
	}
	return figs, l
}

func quietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(discard{}, nil))
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestRedeliveryOutOfAckWindow makes JetStream itself redeliver messages the
// projector has applied: a consumer with a short ack wait receives them,
// does not acknowledge, and receives them again after the wait. Folded by
// the projector (its checkpoint past them), the redeliveries change nothing;
// mixed with new messages after the checkpoint, only the new ones apply.
func TestRedeliveryOutOfAckWindow(t *testing.T) {
	nc, js := faultNATS(t)
	store := projections.NewMemoryStore()
	pub, err := transport.NewPublisher(nc, transport.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stopFeed := backgroundFeed(t, pub)

	p1 := NewProjector(nc, js, store, Options{Log: quietLog()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p1.Run(ctx) }()
	// Let the feed and projector run, then stop both.
	if err := p1.WaitApplied(context.Background(), 500); err != nil {
		t.Fatal(err)
	}
	acked := stopFeed()
	figs0, _ := checkStore(t, js, p1, store, acked)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	applied := p1.Applied()
	viewBefore, _ := store.SKU(context.Background(), "shop-bg", "bg")

	// More events after the checkpoint: a redelivery batch will carry them
	// after the old ones.
	extra := []ledger.Event{{Type: ledger.Sale, Shop: "shop-bg", SKU: "bg", OrderID: "after-1", Qty: ledger.Int64(2), UnitPriceFen: 500},
		{Type: ledger.Cancel, Shop: "shop-bg", SKU: "bg", OrderID: "bg-0"}}
	acks, err := pub.Publish(context.Background(), extra)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acks {
		acked[a.ID] = true
	}

	// A consumer with a 300 ms ack wait: first deliveries left unacknowledged,
	// then the redeliveries, beyond the ack window.
	cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer ccancel()
	last := acks[len(acks)-1].Seq
	cons, err := js.CreateConsumer(cctx, transport.EventStream, jetstream.ConsumerConfig{Durable: "redeliver", AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 300 * time.Millisecond, MaxAckPending: 100_000, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		t.Fatal(err)
	}
	fetchAll := func() []jetstream.Msg {
		var out []jetstream.Msg
		for uint64(len(out)) < last {
			b, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for m := range b.Messages() {
				out = append(out, m)
				n++
			}
			if n == 0 {
				t.Fatalf("fetched %d of %d", len(out), last)
			}
		}
		return out
	}
	first := fetchAll()
	again := fetchAll() // arrives only once the ack wait has passed
	meta, _ := again[0].Metadata()
	if meta.NumDelivered < 2 {
		t.Fatalf("message seq %d delivered %d times, want a redelivery", meta.Sequence.Stream, meta.NumDelivered)
	}
	_ = first

	p2 := NewProjector(nc, js, store, Options{Log: quietLog()})
	ckpt, err := store.Checkpoint(context.Background(), p2.o.Name)
	if err != nil || ckpt != applied {
		t.Fatalf("checkpoint %d (%v), want %d", ckpt, err, applied)
	}
	p2.commits.ckpt, p2.loop.folded = ckpt, ckpt
	p2.applied.set(ckpt)
	// Only old messages: nothing changes.
	var old []jetstream.Msg
	for _, m := range again {
		if md, _ := m.Metadata(); md.Sequence.Stream <= applied {
			old = append(old, m)
		}
	}
	redelivered := 0
	for i := 0; i < len(old); i += DefaultBatchMax {
		batch := old[i:min(i+DefaultBatchMax, len(old))]
		if err := p2.applyBatch(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		redelivered += countRedelivered(batch)
	}
	if p2.Applied() != applied || p2.DeadLettered() != 0 {
		t.Errorf("after redelivering applied messages: applied %d (want %d), dead-lettered %d", p2.Applied(), applied, p2.DeadLettered())
	}
	if v, _ := store.SKU(context.Background(), "shop-bg", "bg"); !reflect.DeepEqual(v, viewBefore) {
		t.Errorf("view changed by redelivery:\n%+v\n%+v", viewBefore, v)
	}
	// The whole redelivery again, with the new messages at its end.
	tail := again[max(0, len(again)-DefaultBatchMax):]
	if err := p2.applyBatch(context.Background(), tail); err != nil {
		t.Fatal(err)
	}
	redelivered += countRedelivered(tail)
	if p2.Applied() != last {
		t.Fatalf("applied %d, want %d", p2.Applied(), last)
	}
	figs, _ := checkStore(t, js, p2, store, acked)
	v, _ := store.SKU(context.Background(), "shop-bg", "bg")
	if v.Committed != viewBefore.Committed+2-1 {
		t.Errorf("committed %d, want %d (+2 sold after, -1 cancelled)", v.Committed, viewBefore.Committed+1)
	}
	t.Logf("RELIABILITY redelivery out of the ack window: runs 1, redelivered %d, %s (before redelivery %s)", redelivered, figs, figs0)
}

// applyBatch folds, commits and acknowledges one batch and waits for it:
// the batch loop's process, then the pipeline's drain.
func (pr *Projector) applyBatch(ctx context.Context, batch []jetstream.Msg) error {
	if err := pr.loop.process(ctx, batch); err != nil {
		return err
	}
	return pr.drain(ctx, nil)
}

// countRedelivered counts the messages JetStream delivered more than once.
func countRedelivered(batch []jetstream.Msg) int {
	n := 0
	for _, m := range batch {
		if md, err := m.Metadata(); err == nil && md.NumDelivered >= 2 {
			n++
		}
	}
	return n
}

// publishTimedOut publishes events with a context already past its
// deadline: the publisher sends them and gives up waiting for the acks, as
// a feed does whose ack timed out; the publish itself lands. It waits until
// the stream holds them and returns the stream's last sequence.
func publishTimedOut(t *testing.T, js jetstream.JetStream, pub *transport.Publisher, events []ledger.Event) (timedOut bool) {
	t.Helper()
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	before := streamLast(t, js)
	_, err := pub.Publish(ctx, events)
	deadline := time.Now().Add(10 * time.Second)
	for streamLast(t, js) < before+uint64(len(events)) {
		if time.Now().After(deadline) {
			t.Fatalf("timed-out publish did not land: stream at %d, want %d", streamLast(t, js), before+uint64(len(events)))
		}
		time.Sleep(5 * time.Millisecond)
	}
	return err != nil
}

func streamLast(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), transport.EventStream)
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().State.LastSeq
}

// TestRetryAfterTimeoutThatLanded: a feed's publish times out although it
// landed, and the feed publishes the same events again. Inside the
// duplicate window the stream stores them once (Nats-Msg-Id); beyond it
// (the window shortened to one second here) they are stored again and the
// read model still counts each sale once, by order id.
func TestRetryAfterTimeoutThatLanded(t *testing.T) {
	const window = time.Second
	nc, js := faultNATS(t)
	ctx := context.Background()
	cfg := transport.EventStreamConfig(transport.StreamOptions{EventMaxBytes: 256 << 20})
	cfg.Duplicates = window
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	store := projections.NewMemoryStore()
	p := NewProjector(nc, js, store, Options{Log: quietLog()})
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	pub, err := transport.NewPublisher(nc, transport.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stopFeed := backgroundFeed(t, pub)
	acked := map[string]bool{}
	publishOK := func(events []ledger.Event) []transport.Ack {
		acks, err := pub.Publish(ctx, events)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range acks {
			acked[a.ID] = true
		}
		return acks
	}
	publishOK([]ledger.Event{{Type: ledger.Listing, Shop: "shop-r", SKU: "r", Title: "t", PriceFen: 800,
		Stock: ledger.Int64(1000), SalesForm: ledger.Spot, ShipWithinHours: 72}})

	rounds := 20
	if os.Getenv("LEDGER_FAULT_FULL") != "" {
		rounds = 200
	}
	timeouts, insideDup, beyondStored := 0, 0, 0
	var wantCommitted int64
	for i := range rounds {
		// Inside the window: the retry is answered as a duplicate of the
		// stored copy.
		in := []ledger.Event{{Type: ledger.Sale, Shop: "shop-r", SKU: "r", OrderID: fmt.Sprintf("in-%d", i), Qty: ledger.Int64(1), UnitPriceFen: 800}}
		if publishTimedOut(t, js, pub, in) {
			timeouts++
		}
		for _, a := range publishOK(in) {
			if !a.Duplicate {
				t.Errorf("retry of %s inside the window stored again at seq %d", in[0].OrderID, a.Seq)
			} else {
				insideDup++
			}
		}
		wantCommitted++
	}
	// Beyond the window: publish, time out, wait the window out, retry.
	beyond := make([][]ledger.Event, rounds)
	for i := range rounds {
		beyond[i] = []ledger.Event{{Type: ledger.Sale, Shop: "shop-r", SKU: "r", OrderID: fmt.Sprintf("out-%d", i), Qty: ledger.Int64(2), UnitPriceFen: 800}}
		if publishTimedOut(t, js, pub, beyond[i]) {
			timeouts++
		}
		wantCommitted += 2
	}
	// The duplicate window is a span of time: only the clock can show it
	// has passed.
	for end := time.Now().Add(window + 500*time.Millisecond); time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	for i := range rounds {
		for _, a := range publishOK(beyond[i]) {
			if a.Duplicate {
				t.Errorf("retry of %s beyond the window answered as duplicate: the window did not pass", beyond[i][0].OrderID)
			} else {
				beyondStored++
			}
		}
	}
	bgAcked := stopFeed()
	for id := range bgAcked {
		acked[id] = true
	}
	_, l := checkStore(t, js, p, store, nil)
	v, err := store.SKU(ctx, "shop-r", "r")
	if err != nil {
		t.Fatal(err)
	}
	if v.Committed != wantCommitted || v.OpenOrders != int64(2*rounds) {
		t.Errorf("committed %d open orders %d, want %d and %d: a re-sent sale counted twice", v.Committed, v.OpenOrders, wantCommitted, 2*rounds)
	}
	// Figures: every acknowledged event stored; the beyond-window retries
	// are stored twice by design and counted once.
	lost, storedTwice := 0, 0
	for id := range acked {
		switch l.IDs[id] {
		case 0:
			lost++
		case 1:
		default:
			storedTwice++
		}
	}
	if lost != 0 || storedTwice != beyondStored {
		t.Errorf("lost %d, stored twice %d (want 0 and %d)", lost, storedTwice, beyondStored)
	}
	t.Logf("RELIABILITY retry after a landed timeout: runs 1, timed-out publishes %d, acknowledged %d, lost %d, retries inside the window deduplicated %d, beyond it stored again %d and counted once (double counted 0)",
		timeouts, len(acked), lost, insideDup, beyondStored)
}
