package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/consumers"
	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// throughputEventsDefault is the stream size each projection run folds;
// LEDGER_THROUGHPUT_EVENTS overrides it.
const throughputEventsDefault = 100_000

// TestClusterThroughput (LEDGER_CLUSTER_FULL=1 only) measures, in one run on
// one 3-node cluster (R3) and one Postgres, how fast ledgerd processes fold
// a preloaded event stream into the read model: one projector on an
// unpartitioned stream, then a 2-partition stream folded by one instance
// holding both partitions, then by two instances holding one each. Each run
// starts on an empty read model; the clock runs from the first commit to
// the last event applied.
func TestClusterThroughput(t *testing.T) {
	if !clusterFull() {
		t.Skip("LEDGER_CLUSTER_FULL=1 runs the throughput measurement")
	}
	events := throughputEventsDefault
	if n, err := strconv.Atoi(os.Getenv("LEDGER_THROUGHPUT_EVENTS")); err == nil && n > 0 {
		events = n
	}
	bin := buildLedgerd(t)
	cl := startCluster(t, 3)
	nc, js := connectJS(t, cl.url())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	type result struct {
		name          string
		instances     int
		partitions    int
		seconds, rate float64
	}
	var results []result
	measure := func(name string, partitions, instances int) {
		dbURL := testDatabaseURL(t)
		store, err := projections.OpenPostgres(ctx, dbURL, projections.PostgresOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		names := []string{consumers.DefaultName}
		if partitions > 1 {
			names = nil
			for p := range partitions {
				names = append(names, consumers.PartitionName(consumers.DefaultName, p))
			}
		}
		lasts := partitionLasts(ctx, t, js, partitions)
		var daemons []*clusterDaemon
		for i := range instances {
			daemons = append(daemons, startClusterDaemon(t, bin, fmt.Sprintf("%s-%d", name, i), cl.url(), dbURL, partitions))
		}
		var first time.Time
		deadline := time.Now().Add(10 * time.Minute)
		for {
			done, any := true, false
			for i, n := range names {
				ck, err := store.Checkpoint(ctx, n)
				if err != nil {
					t.Fatal(err)
				}
				any = any || ck > 0
				done = done && ck >= lasts[i]
			}
			if any && first.IsZero() {
				first = time.Now()
			}
			if done {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not applied within 10 minutes", name)
			}
			waitFor(20 * time.Millisecond)
		}
		secs := time.Since(first).Seconds()
		results = append(results, result{name, instances, partitions, secs, float64(events) / secs})
		for _, d := range daemons {
			d.d.kill()
		}
		if err := js.DeleteConsumer(ctx, transport.EventStream, names[0]); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Logf("delete consumer: %v", err)
		}
	}

	// One projector, unpartitioned stream.
	if err := transport.EnsureStreams(ctx, js, transport.StreamOptions{Replicas: 3, EventMaxBytes: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	preload(ctx, t, nc, events)
	measure("single", 1, 1)

	// The same events on a 2-partition stream.
	if err := js.DeleteStream(ctx, transport.EventStream); err != nil {
		t.Fatal(err)
	}
	if err := transport.EnsureStreams(ctx, js, transport.StreamOptions{Replicas: 3, EventMaxBytes: 1 << 30, Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	preload(ctx, t, nc, events)
	measure("p2-one", 2, 1)
	for p := range 2 { // the next run starts its partitions afresh
		_ = js.DeleteConsumer(ctx, transport.EventStream, consumers.PartitionName(consumers.DefaultName, p))
	}
	measure("p2-two", 2, 2)

	t.Logf("projection throughput, %d events (20 shops, sales and restocks), 3-node cluster R3, Postgres read model:", events)
	t.Logf("%-8s %9s %10s %9s %12s %18s", "run", "instances", "partitions", "seconds", "events/s", "events/s/partition")
	for _, r := range results {
		t.Logf("%-8s %9d %10d %9.2f %12.0f %18.0f", r.name, r.instances, r.partitions, r.seconds, r.rate, r.rate/float64(r.partitions))
	}
}

// preload publishes events sales and restocks over 20 shops.
func preload(ctx context.Context, t *testing.T, nc *nats.Conn, events int) {
	t.Helper()
	pub, err := transport.NewPublisher(nc, transport.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < events; i += ledger.MaxBatch {
		chunk := make([]ledger.Event, 0, ledger.MaxBatch)
		for j := i; j < min(events, i+ledger.MaxBatch); j++ {
			s := fmt.Sprintf("shop-%02d", j%clusterShops)
			if j%2 == 0 {
				chunk = append(chunk, ledger.Event{Type: ledger.Sale, Shop: s, SKU: "sku-1", OrderID: fmt.Sprintf("o-%07d", j), Qty: ledger.Int64(1), UnitPriceFen: 1000})
			} else {
				chunk = append(chunk, ledger.Event{Type: ledger.Restock, Shop: s, SKU: "sku-1", Qty: ledger.Int64(1)})
			}
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := pub.Publish(pctx, chunk)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// partitionLasts returns the last stream sequence of each partition (of the
// whole stream when unpartitioned).
func partitionLasts(ctx context.Context, t *testing.T, js jetstream.JetStream, partitions int) []uint64 {
	t.Helper()
	st, err := js.Stream(ctx, transport.EventStream)
	if err != nil {
		t.Fatal(err)
	}
	if partitions < 2 {
		return []uint64{st.CachedInfo().State.LastSeq}
	}
	// Direct gets may be answered by a replica that lags: read until the
	// partitions' last sequences reach the leader's last sequence.
	want := st.CachedInfo().State.LastSeq
	deadline := time.Now().Add(30 * time.Second)
	for {
		lasts := make([]uint64, partitions)
		var top uint64
		for p := range partitions {
			m, err := st.GetLastMsgForSubject(ctx, transport.PartitionFilter(p))
			if err != nil {
				t.Fatal(err)
			}
			lasts[p] = m.Sequence
			top = max(top, m.Sequence)
		}
		if top == want {
			return lasts
		}
		if time.Now().After(deadline) {
			t.Fatalf("partition last sequences %v never reached the stream's %d", lasts, want)
		}
		waitFor(20 * time.Millisecond)
	}
}
