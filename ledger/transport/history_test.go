package transport_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"stockledger/consumers/consumertest"
	"stockledger/ledger"
	"stockledger/ledger/transport"
)

// TestHistory reads one SKU's messages among another SKU's: in pages, with
// the last sequence from the leader, bounded, and with the reasons of the
// SKU's dead letters.
func TestHistory(t *testing.T) {
	nc, js := consumertest.StartNATS(t, 64<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pub, err := transport.NewPublisher(nc, transport.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var events []ledger.Event
	for i := range 2500 {
		sku := "mine"
		if i%2 == 1 {
			sku = "other"
		}
		events = append(events, ledger.Event{Type: ledger.Restock, Shop: "shop-h", SKU: sku, Qty: ledger.Int64(1)})
	}
	var mine []uint64
	for part := range slices.Chunk(events, ledger.MaxBatch) {
		acks, err := pub.Publish(ctx, part)
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range acks {
			if part[i].SKU == "mine" {
				mine = append(mine, a.Seq)
			}
		}
	}
	h := transport.NewHistory(js)

	last, err := h.LastSeq(ctx, "shop-h", "mine")
	if err != nil || last != mine[len(mine)-1] {
		t.Fatalf("LastSeq = %d, %v; want %d", last, err, mine[len(mine)-1])
	}
	if _, _, err := h.Read(ctx, "shop-h", "never", 0, 10); !errors.Is(err, transport.ErrNoEvents) {
		t.Fatalf("Read of a SKU with no events: %v, want ErrNoEvents", err)
	}

	// Pages of 700 (more than one direct batch) follow each other.
	var got []uint64
	after := uint64(0)
	for {
		msgs, more, err := h.Read(ctx, "shop-h", "mine", after, 700)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if m.Subject != "stock.events.shop-h.mine" {
				t.Fatalf("message of subject %s in mine's history", m.Subject)
			}
			got = append(got, m.Seq)
		}
		if !more {
			break
		}
		after = msgs[len(msgs)-1].Seq
	}
	if fmt.Sprint(got) != fmt.Sprint(mine) {
		t.Fatalf("history read %d sequences, want %d (first %v)", len(got), len(mine), got[:min(5, len(got))])
	}

	n := 0
	err = h.Each(ctx, "shop-h", "mine", 100, func(transport.StoredEvent) error { n++; return nil })
	if !errors.Is(err, transport.ErrHistoryTooLong) || n != 100 {
		t.Fatalf("Each bounded at 100: %d read, err %v; want 100 and ErrHistoryTooLong", n, err)
	}

	// The projector's dead letters name the sequence and the reason.
	for _, seq := range mine[:2] {
		msg := &nats.Msg{Subject: transport.DeadSubject("stock.events.shop-h.mine"), Data: []byte("{}"), Header: nats.Header{}}
		msg.Header.Set(transport.HeaderDeadSeq, strconv.FormatUint(seq, 10))
		msg.Header.Set(transport.HeaderDeadReason, "refused "+strconv.FormatUint(seq, 10))
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	refused, err := h.Refusals(ctx, "shop-h", "mine")
	if err != nil {
		t.Fatal(err)
	}
	if len(refused) != 2 || refused[mine[0]] != "refused "+strconv.FormatUint(mine[0], 10) {
		t.Fatalf("Refusals = %v, want the two dead letters", refused)
	}
	if other, err := h.Refusals(ctx, "shop-h", "other"); err != nil || len(other) != 0 {
		t.Fatalf("Refusals(other) = %v, %v; want none", other, err)
	}
}
