package consumers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"stockledger/consumers"
	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// TestViewBucketRebuild: the projector writes each SKU's view to the bucket;
// a rebuild of the memory read model at start does not replay old states to
// watchers, it writes each SKU's final view once caught up. The hooks see
// every event applied.
func TestViewBucketRebuild(t *testing.T) {
	nc, js := startNATS(t)
	ctx := context.Background()
	kv, err := transport.EnsureViewBucket(ctx, js, transport.StreamOptions{EventMaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := transport.NewPublisher(nc, transport.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	opts := func() consumers.Options {
		return consumers.Options{Log: testLog(t), BatchMax: 7, ViewBucket: transport.ViewBucket}
	}
	p1 := consumers.NewProjector(nc, js, projections.NewMemoryStore(), opts())
	stop := runProjector(t, p1)
	events := []ledger.Event{listing("s1", "a", 100), listing("s1", "b", 5)}
	for i := range 40 {
		events = append(events, sale("s1", "a", fmt.Sprintf("o-%d", i), 1))
	}
	last := publish(t, pub, events...)
	waitApplied(t, p1, last)
	if v := kvView(t, kv, "s1.a", last); v.Committed != 40 {
		t.Errorf("bucket s1.a committed %d, want 40", v.Committed)
	}
	stop()

	w, err := kv.Watch(ctx, "s1.*", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	final := publish(t, pub, sale("s1", "a", "o-40", 1))

	var mu sync.Mutex
	applied := 0
	o := opts()
	o.Hooks.Committed = func(b consumers.BatchStats) {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range b.Applied {
			applied += n
		}
	}
	p2 := consumers.NewProjector(nc, js, projections.NewMemoryStore(), o)
	runProjector(t, p2)
	waitApplied(t, p2, final)

	want := map[string]uint64{"s1.a": final, "s1.b": 2}
	seen := map[string]int{}
	deadline := time.After(15 * time.Second)
	for len(seen) < len(want) {
		select {
		case e := <-w.Updates():
			if e == nil {
				continue
			}
			var v projections.View
			if err := json.Unmarshal(e.Value(), &v); err != nil {
				t.Fatal(err)
			}
			if v.LastSeq != want[e.Key()] {
				t.Errorf("rebuild wrote %s at seq %d; watchers must only see the final view (seq %d)", e.Key(), v.LastSeq, want[e.Key()])
			}
			seen[e.Key()]++
		case <-deadline:
			t.Fatalf("views after the rebuild: saw %v, want %v", seen, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if applied != int(final) {
		t.Errorf("Committed hook counted %d events applied, want %d", applied, final)
	}
}

// kvView polls key until its view reaches lastSeq.
func kvView(t *testing.T, kv jetstream.KeyValue, key string, lastSeq uint64) projections.View {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if e, err := kv.Get(context.Background(), key); err == nil {
			var v projections.View
			if err := json.Unmarshal(e.Value(), &v); err != nil {
				t.Fatal(err)
			}
			if v.LastSeq >= lastSeq {
				return v
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("key %s did not reach seq %d within 15s", key, lastSeq)
		}
		<-time.After(20 * time.Millisecond)
	}
}
