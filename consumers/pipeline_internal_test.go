package consumers

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// TestResetLandsWriteInFlight: a batch fails after its fold (its dead
// letter cannot be sent) while the batch before is still in flight. The
// reset waits for that write and, since it committed, lands it as every
// committed write is landed: the waiters, the Committed hook and the view
// subject hear of it, and the store's checkpoint is the projector's.
func TestResetLandsWriteInFlight(t *testing.T) {
	nc, js := faultNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	store := projections.NewMemoryStore()
	pub, err := transport.NewPublisher(nc, transport.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, []ledger.Event{
		{Type: ledger.Listing, Shop: "s1", SKU: "a", Title: "t", PriceFen: 1000, Stock: ledger.Int64(10), SalesForm: ledger.Spot, ShipWithinHours: 24},
		orderEvent(ledger.Sale, "o-1"),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, transport.EventSubject("s1", "a"), []byte(`{"type":"sale",`)); err != nil {
		t.Fatal(err)
	}
	msgs := fetchEvents(ctx, t, js, 3)
	views, err := nc.SubscribeSync(transport.ViewSubject("s1", "a"))
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var committed []BatchStats
	pr := NewProjector(nc, js, store, Options{Log: quietLog(), Hooks: Hooks{Committed: func(b BatchStats) {
		mu.Lock()
		defer mu.Unlock()
		committed = append(committed, b)
	}}})
	if err := pr.loop.process(ctx, msgs[:2]); err != nil {
		t.Fatal(err)
	}
	// The poison message of the next batch cannot be dead-lettered.
	if err := js.DeleteStream(ctx, transport.DeadStream); err != nil {
		t.Fatal(err)
	}
	if err := pr.loop.process(ctx, msgs[2:]); !errors.Is(err, errReset) {
		t.Fatalf("batch with an undeliverable dead letter: err %v, want errReset", err)
	}

	if got := pr.Applied(); got != 2 {
		t.Errorf("applied %d, want 2: the write in flight committed", got)
	}
	if ckpt, err := store.Checkpoint(ctx, pr.o.Name); err != nil || ckpt != pr.commits.ckpt {
		t.Errorf("store checkpoint %d (%v), projector's %d", ckpt, err, pr.commits.ckpt)
	}
	mu.Lock()
	if len(committed) != 1 || committed[0].AppliedSeq != 2 {
		t.Errorf("Committed hook saw %+v, want one batch up to seq 2", committed)
	}
	mu.Unlock()
	if _, err := views.NextMsg(5 * time.Second); err != nil {
		t.Errorf("view of the landed batch not published: %v", err)
	}
	if pr.Err() == nil {
		t.Error("Err is nil after a reset")
	}
}

// fetchEvents reads the first n messages of the event stream with a
// consumer of the test's own, unacknowledged.
func fetchEvents(ctx context.Context, t *testing.T, js jetstream.JetStream, n int) []jetstream.Msg {
	t.Helper()
	cons, err := js.CreateConsumer(ctx, transport.EventStream, jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for len(out) < n {
		b, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range b.Messages() {
			out = append(out, m)
			got++
		}
		if got == 0 {
			t.Fatalf("fetched %d of %d events", len(out), n)
		}
	}
	return out
}
