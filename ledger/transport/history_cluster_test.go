package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/consumers/consumertest"
	"stockledger/ledger"
	"stockledger/ledger/transport"
)

// History read sizes on a cluster.
const (
	clusterHistorySKUs  = 8
	clusterHistoryEach  = 150 // events per SKU
	clusterHistoryReads = 120 // reads per server
)

// TestHistoryR3 reads finished SKU histories again and again through every
// server of a quiet three-server cluster whose streams have three replicas:
// every read answers, whole and in order (a read must never time out on a
// quiet cluster, whichever replica answers its direct gets).
func TestHistoryR3(t *testing.T) {
	cl := consumertest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nc, err := nats.Connect(cl.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := transport.EnsureStreams(ctx, js, transport.StreamOptions{Replicas: 3, EventMaxBytes: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	pub, err := transport.NewPublisher(nc, transport.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]uint64{}
	for range clusterHistoryEach {
		var batch []ledger.Event
		for k := range clusterHistorySKUs {
			batch = append(batch, ledger.Event{Type: ledger.Restock, Shop: "shop-r", SKU: skuName(k), Qty: ledger.Int64(1)})
		}
		acks, err := pub.Publish(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range acks {
			want[batch[i].SKU] = append(want[batch[i].SKU], a.Seq)
		}
	}
	// Reads while the SKUs grow: each read must reach the last sequence the
	// leader named, though the replica answering may not hold it yet.
	stop := make(chan struct{})
	fed := make(chan error, 1)
	go func() {
		for range clusterHistoryEach {
			select {
			case <-stop:
				fed <- nil
				return
			default:
			}
			var batch []ledger.Event
			for k := range clusterHistorySKUs {
				batch = append(batch, ledger.Event{Type: ledger.Restock, Shop: "shop-r", SKU: skuName(k), Qty: ledger.Int64(1)})
			}
			acks, err := pub.Publish(ctx, batch)
			if err != nil {
				fed <- err
				return
			}
			for i, a := range acks {
				want[batch[i].SKU] = append(want[batch[i].SKU], a.Seq)
			}
		}
		<-stop
		fed <- nil
	}()
	readAll(t, cl, clusterHistoryReads, nil)
	close(stop)
	if err := <-fed; err != nil {
		t.Fatal(err)
	}
	readAll(t, cl, clusterHistoryReads, want)
}

// readAll reads each SKU's whole history n times through each server; with
// want, each read must return exactly its sequences' first and last (the
// SKUs no longer grow).
func readAll(t *testing.T, cl *consumertest.Cluster, n int, want map[string][]uint64) {
	t.Helper()
	for _, s := range cl.Servers {
		snc, err := nats.Connect(s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		defer snc.Close()
		sjs, _ := jetstream.New(snc)
		h := transport.NewHistory(sjs)
		slowest := time.Duration(0)
		for i := range n {
			sku := skuName(i % clusterHistorySKUs)
			began := time.Now()
			// No deadline of the caller's own: the HTTP handlers pass the
			// request's context, which has none.
			msgs, more, err := h.Read(context.Background(), "shop-r", sku, 0, 2*clusterHistoryEach)
			slowest = max(slowest, time.Since(began))
			if err != nil {
				t.Fatalf("server %s, read %d of %s: %v", s.Name(), i, sku, err)
			}
			if want == nil {
				continue
			}
			if more || len(msgs) != len(want[sku]) || msgs[0].Seq != want[sku][0] || msgs[len(msgs)-1].Seq != want[sku][len(want[sku])-1] {
				t.Fatalf("server %s, read %d of %s: %d events (more %v), want %d", s.Name(), i, sku, len(msgs), more, len(want[sku]))
			}
		}
		t.Logf("server %s: %d history reads (growing: %v), slowest %s", s.Name(), n, want == nil, slowest)
	}
}

func skuName(k int) string { return "sku-" + string(rune('a'+k)) }
