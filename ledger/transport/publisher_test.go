package transport_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"stockledger/consumers/consumertest"
	"stockledger/ledger"
	"stockledger/ledger/transport"
)

func sales(shop string, from, n int) []ledger.Event {
	events := make([]ledger.Event, 0, n)
	for i := from; i < from+n; i++ {
		events = append(events, ledger.Event{Type: ledger.Sale, Shop: shop, SKU: "sku-1",
			OrderID: fmt.Sprintf("o-%d", i), Qty: ledger.Int64(1), UnitPriceFen: 100})
	}
	return events
}

// storedIDs reads the event stream's messages from seq 1 and returns each
// one's Nats-Msg-Id by sequence, and how many were stored by an atomic batch.
func storedIDs(t *testing.T, js jetstream.JetStream) (map[uint64]string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, transport.EventStream)
	if err != nil {
		t.Fatal(err)
	}
	out, batched := map[uint64]string{}, 0
	for seq := uint64(1); seq <= st.CachedInfo().State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		out[seq] = m.Header.Get(jetstream.MsgIDHeader)
		if m.Header.Get(jetstreamext.BatchIDHeader) != "" {
			batched++
		}
	}
	return out, batched
}

// TestPublisher publishes with and without atomic batches: every ack's
// sequence holds that event, a re-sent batch is stored once and answered
// with the first copies' sequences, and a batch holding the same order
// twice stores it once.
func TestPublisher(t *testing.T) {
	for _, atomic := range []bool{false, true} {
		t.Run(fmt.Sprintf("atomic=%v", atomic), func(t *testing.T) {
			nc, js := consumertest.StartNATS(t, 64<<20)
			pub, err := transport.NewPublisher(nc, transport.PublisherOptions{AtomicBatches: atomic})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			first := sales("shop-p", 0, 300)
			acks, err := pub.Publish(ctx, first)
			if err != nil {
				t.Fatal(err)
			}
			ids, batched := storedIDs(t, js)
			if len(ids) != len(first) {
				t.Fatalf("stream holds %d messages, want %d", len(ids), len(first))
			}
			if want := map[bool]int{false: 0, true: len(first)}[atomic]; batched != want {
				t.Errorf("%d messages stored by an atomic batch, want %d", batched, want)
			}
			for i, a := range acks {
				if a.ID != first[i].ID || a.Duplicate || ids[a.Seq] != first[i].Key() {
					t.Fatalf("ack %d = %+v; seq %d holds %q, want %q", i, a, a.Seq, ids[a.Seq], first[i].Key())
				}
			}

			// The same batch again (a retry): nothing new is stored.
			again, err := pub.Publish(ctx, first)
			if err != nil {
				t.Fatal(err)
			}
			for i, a := range again {
				if !a.Duplicate || a.Seq != acks[i].Seq {
					t.Fatalf("re-sent ack %d = %+v, want a duplicate of seq %d", i, a, acks[i].Seq)
				}
			}

			// One batch naming an order twice, and new orders around it.
			mixed := append(sales("shop-p", 300, 2), sales("shop-p", 300, 1)...)
			mixed = append(mixed, sales("shop-p", 302, 2)...)
			if _, err := pub.Publish(ctx, mixed); err != nil {
				t.Fatal(err)
			}
			ids, _ = storedIDs(t, js)
			seen := map[string]int{}
			for _, id := range ids {
				seen[id]++
			}
			if len(ids) != 304 {
				t.Errorf("stream holds %d messages, want 304", len(ids))
			}
			for id, n := range seen {
				if n != 1 {
					t.Errorf("order %s stored %d times", id, n)
				}
			}
		})
	}
}
