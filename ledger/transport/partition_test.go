package transport_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"stockledger/consumers/consumertest"
	"stockledger/ledger/transport"
)

func startJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := consumertest.StartNATS(t, 0)
	return js
}

// TestPartitionMatchesServer publishes on the contract subject of many shops
// into a partitioned stream and checks that the server stored each event
// under the subject StoredEventSubject computes, and that the stream's
// configuration gives back the partition count.
func TestPartitionMatchesServer(t *testing.T) {
	js := startJS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range []int{1, 2, 7} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			if err := js.DeleteStream(ctx, transport.EventStream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				t.Fatal(err)
			}
			if err := transport.EnsureStreams(ctx, js, transport.StreamOptions{EventMaxBytes: 64 << 20, Partitions: n}); err != nil {
				t.Fatal(err)
			}
			st, err := js.Stream(ctx, transport.EventStream)
			if err != nil {
				t.Fatal(err)
			}
			if got := transport.EventPartitions(st.CachedInfo().Config); got != n {
				t.Fatalf("EventPartitions = %d, want %d", got, n)
			}
			seen := make(map[int]bool)
			for i := range 200 {
				shop, sku := fmt.Sprintf("shop-%d_x", i*7919), fmt.Sprintf("sku-%d", i)
				ack, err := js.Publish(ctx, transport.EventSubject(shop, sku), []byte(`{}`))
				if err != nil {
					t.Fatal(err)
				}
				m, err := st.GetMsg(ctx, ack.Sequence)
				if err != nil {
					t.Fatal(err)
				}
				if want := transport.StoredEventSubject(shop, sku, n); m.Subject != want {
					t.Fatalf("shop %s: stored subject %q, want %q", shop, m.Subject, want)
				}
				seen[transport.Partition(shop, n)] = true
			}
			if len(seen) != n {
				t.Fatalf("200 shops fell into %d of %d partitions", len(seen), n)
			}
		})
	}
}

// TestExpectedLastSubjectSeqPartitioned checks that optimistic concurrency on
// the publish subject is judged against the stored (transformed) subject's
// last sequence, which is what the command path reads.
func TestExpectedLastSubjectSeqPartitioned(t *testing.T) {
	js := startJS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := transport.EnsureStreams(ctx, js, transport.StreamOptions{EventMaxBytes: 64 << 20, Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, transport.EventStream)
	if err != nil {
		t.Fatal(err)
	}
	subj := transport.EventSubject("shop-a", "sku-a")
	first, err := js.Publish(ctx, subj, []byte(`{}`), jetstream.WithExpectLastSequencePerSubject(0))
	if err != nil {
		t.Fatal(err)
	}
	last, err := st.GetLastMsgForSubject(ctx, transport.StoredEventSubject("shop-a", "sku-a", 4))
	if err != nil {
		t.Fatal(err)
	}
	if last.Sequence != first.Sequence {
		t.Fatalf("last of stored subject = %d, want %d", last.Sequence, first.Sequence)
	}
	if _, err := js.Publish(ctx, subj, []byte(`{}`), jetstream.WithExpectLastSequencePerSubject(0)); !transport.IsWrongLastSequence(err) {
		t.Fatalf("second publish expecting a new subject: err = %v, want wrong last sequence", err)
	}
	if _, err := js.Publish(ctx, subj, []byte(`{}`), jetstream.WithExpectLastSequencePerSubject(last.Sequence)); err != nil {
		t.Fatalf("publish expecting seq %d: %v", last.Sequence, err)
	}
}
