package consumers_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"stockledger/consumers"
	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// TestPartitionedTakeover runs two instances of a partitioned projection
// (two Partitioned) over a 3-partition stream and one shared store: together they hold every partition, each at most
// two; when one stops, the other takes its partitions over and folds what
// comes next; every event is applied once.
func TestPartitionedTakeover(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			nc, js := startNATS(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := js.DeleteStream(ctx, transport.EventStream); err != nil {
				t.Fatal(err)
			}
			if err := transport.EnsureStreams(ctx, js, transport.StreamOptions{EventMaxBytes: 64 << 20, Partitions: 3}); err != nil {
				t.Fatal(err)
			}
			store := open(t)
			member := func(name string) (*consumers.Partitioned, func()) {
				g, err := consumers.NewPartitioned(nc, js, store, consumers.PartitionOptions{
					Partitions: 3, Instance: name, LeaseTTL: time.Second, Projector: consumers.Options{Log: testLog(t)},
				})
				if err != nil {
					t.Fatal(err)
				}
				gctx, stop := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- g.Run(gctx) }()
				stopped := false
				stopFn := func() {
					if !stopped {
						stopped = true
						stop()
						if err := <-done; err != nil {
							t.Errorf("member %s: %v", name, err)
						}
					}
				}
				t.Cleanup(stopFn)
				return g, stopFn
			}
			a, stopA := member("a")
			b, _ := member("b")

			waitOwned(t, func() bool {
				oa, ob := a.Owned(), b.Owned()
				all := append(slices.Clone(oa), ob...)
				slices.Sort(all)
				return slices.Equal(all, []int{0, 1, 2}) && len(oa) <= 2 && len(ob) <= 2 && len(oa) > 0 && len(ob) > 0
			})

			pub, err := transport.NewPublisher(nc, transport.PublisherOptions{})
			if err != nil {
				t.Fatal(err)
			}
			const shops = 12
			var events []ledger.Event
			for i := range shops {
				events = append(events, listing(fmt.Sprintf("s%d", i), "k", 100))
				for j := range 5 {
					events = append(events, sale(fmt.Sprintf("s%d", i), "k", fmt.Sprintf("o-%d-%d", i, j), 1))
				}
			}
			last := publish(t, pub, events...)
			if err := b.WaitApplied(ctx, last); err != nil {
				t.Fatal(err)
			}

			stopA()
			waitOwned(t, func() bool { return slices.Equal(b.Owned(), []int{0, 1, 2}) })
			var more []ledger.Event
			for i := range shops {
				more = append(more, sale(fmt.Sprintf("s%d", i), "k", fmt.Sprintf("o-%d-x", i), 2))
				// A re-sent order changes nothing.
				more = append(more, sale(fmt.Sprintf("s%d", i), "k", fmt.Sprintf("o-%d-0", i), 1))
			}
			last = publish(t, pub, more...)
			if err := b.WaitApplied(ctx, last); err != nil {
				t.Fatal(err)
			}
			for i := range shops {
				v, err := store.SKU(ctx, fmt.Sprintf("s%d", i), "k")
				if err != nil {
					t.Fatal(err)
				}
				if v.Committed != 7 || v.OpenOrders != 6 {
					t.Errorf("shop s%d: committed %d, open orders %d; want 7 and 6", i, v.Committed, v.OpenOrders)
				}
			}
			for p := range 3 {
				ck, err := store.Checkpoint(ctx, consumers.PartitionName(consumers.DefaultName, p))
				if err != nil {
					t.Fatal(err)
				}
				if ck == 0 {
					t.Errorf("partition %d: no checkpoint", p)
				}
			}
		})
	}
}

func waitOwned(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("partitions not held as expected within 20s")
		}
		<-tick.C
	}
}

// TestPartitionedAdoptsOwnLease: a lease key that already names this
// instance (a Create whose answer was lost, or a lease left by the
// instance's previous process) is renewed and taken at once, not waited
// out for the TTL; a key naming another instance is left alone.
func TestPartitionedAdoptsOwnLease(t *testing.T) {
	nc, js := startNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, transport.EventStream); err != nil {
		t.Fatal(err)
	}
	if err := transport.EnsureStreams(ctx, js, transport.StreamOptions{EventMaxBytes: 64 << 20, Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	const ttl = 40 * time.Second // far longer than the test waits
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: consumers.LeaseBucket, History: 1, TTL: ttl, Storage: jetstream.FileStorage, Replicas: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	for key, owner := range map[string]string{"owner.0": "a", "owner.1": "b"} {
		if _, err := kv.Put(ctx, key, []byte(owner)); err != nil {
			t.Fatal(err)
		}
	}
	g, err := consumers.NewPartitioned(nc, js, projections.NewMemoryStore(), consumers.PartitionOptions{
		Partitions: 2, Instance: "a", LeaseTTL: ttl, Projector: consumers.Options{Log: testLog(t)},
	})
	if err != nil {
		t.Fatal(err)
	}
	gctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitOwned(t, func() bool { return slices.Equal(g.Owned(), []int{0}) })
	e, err := kv.Get(ctx, "owner.1")
	if err != nil || string(e.Value()) != "b" {
		t.Errorf("owner.1 = %v, %v; want b's lease left alone", e, err)
	}
}
