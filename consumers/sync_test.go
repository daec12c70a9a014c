package consumers_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/consumers"
	"stockledger/consumers/consumertest"
	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// TestSyncInstructions: each committed change of a SKU whose listed and
// sellable differ is published once on stock.sync.<shop>.<sku> (key and
// Nats-Msg-Id sync:<shop>:<sku>:<seq>) and put in STOCK_SYNC_TARGETS; once
// they agree the bucket key goes, and nothing more is published. A memory
// read model rebuilt from the stream (a restart) publishes none again.
func TestSyncInstructions(t *testing.T) {
	// A duplicate window of 1 s: what the rebuild must not publish again
	// would not be kept out by the stream once it has passed.
	nc, js, pub := startStreams(t, time.Second)
	p := consumers.NewProjector(nc, js, projections.NewMemoryStore(), consumers.Options{Log: testLog(t), SkipPublishedAlerts: true})
	stop := runProjector(t, p)
	publish(t, pub, listing("s1", "a", 10), sale("s1", "a", "o-1", 2))
	last := publish(t, pub, ledger.Event{Type: ledger.Recount, Shop: "s1", SKU: "a", Counted: ledger.Int64(5)})
	waitApplied(t, p, last)
	in := waitSync(t, js, 1)[0]
	if in.Shop != "s1" || in.SKU != "a" || in.Listed != 8 || in.Sellable != 3 || in.Delta != -5 || in.Seq != last ||
		in.Key != projections.SyncKey("s1", "a", last) {
		t.Fatalf("instruction %+v, want listed 8 sellable 3 delta -5 at seq %d", in, last)
	}
	target := waitTarget(t, js, "s1.a", true)
	if target.Key != in.Key {
		t.Errorf("bucket target %+v, want the instruction %s", target, in.Key)
	}

	// A restart rebuilds the memory read model from sequence 1 and comes
	// to the same instruction: it was published before, and is not again.
	stop()
	waitForWindow := time.NewTimer(1100 * time.Millisecond) // past the duplicate window
	<-waitForWindow.C
	p2 := consumers.NewProjector(nc, js, projections.NewMemoryStore(), consumers.Options{Log: testLog(t), SkipPublishedAlerts: true})
	runProjector(t, p2)
	waitApplied(t, p2, last)

	// The platform now shows 3: the figures agree, the target goes.
	last = publish(t, pub, ledger.Event{Type: ledger.StockSet, Shop: "s1", SKU: "a", Stock: ledger.Int64(3)})
	waitApplied(t, p2, last)
	waitTarget(t, js, "s1.a", false)
	// A new difference: a new instruction, and only it.
	last = publish(t, pub, ledger.Event{Type: ledger.Recount, Shop: "s1", SKU: "a", Counted: ledger.Int64(4)})
	waitApplied(t, p2, last)
	got := waitSync(t, js, 2)
	if len(got) != 2 || got[1].Seq != last || got[1].Listed != 3 || got[1].Sellable != 2 {
		t.Fatalf("instructions %+v, want the first and one at seq %d (listed 3, sellable 2)", got, last)
	}
	waitTarget(t, js, "s1.a", true)
}

// startStreams starts a nats-server with the ledger's streams (the event
// and alert streams' duplicate window dup, 0 for the default) and returns a
// connection, its JetStream and a publisher on it.
func startStreams(t *testing.T, dup time.Duration) (*nats.Conn, jetstream.JetStream, *transport.Publisher) {
	t.Helper()
	nc, js := consumertest.StartNATS(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := transport.EnsureStreams(ctx, js, transport.StreamOptions{EventMaxBytes: 64 << 20, DuplicateWindow: dup}); err != nil {
		t.Fatal(err)
	}
	pub, err := transport.NewPublisher(nc, transport.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, pub
}

// waitSync waits until STOCK_SYNC holds at least n instructions and returns
// them all.
func waitSync(t *testing.T, js jetstream.JetStream, n int) []projections.SyncInstruction {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		st, err := js.Stream(ctx, transport.SyncStream)
		if err != nil {
			t.Fatal(err)
		}
		if int(st.CachedInfo().State.Msgs) >= n {
			var out []projections.SyncInstruction
			for seq := uint64(1); seq <= st.CachedInfo().State.LastSeq; seq++ {
				m, err := st.GetMsg(ctx, seq)
				if err != nil {
					t.Fatal(err)
				}
				var in projections.SyncInstruction
				if err := json.Unmarshal(m.Data, &in); err != nil {
					t.Fatal(err)
				}
				if id := m.Header.Get(jetstream.MsgIDHeader); id != in.Key {
					t.Errorf("instruction %s published with Nats-Msg-Id %q", in.Key, id)
				}
				out = append(out, in)
			}
			return out
		}
		select {
		case <-ctx.Done():
			t.Fatalf("STOCK_SYNC holds %d instructions, want %d", st.CachedInfo().State.Msgs, n)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitTarget waits until the bucket holds key (present) or not, and returns
// its instruction.
func waitTarget(t *testing.T, js jetstream.JetStream, key string, present bool) projections.SyncInstruction {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, transport.SyncTargetsBucket)
	if err != nil {
		t.Fatal(err)
	}
	for {
		e, err := kv.Get(ctx, key)
		switch {
		case err == nil && present:
			var in projections.SyncInstruction
			if err := json.Unmarshal(e.Value(), &in); err != nil {
				t.Fatal(err)
			}
			return in
		case errors.Is(err, jetstream.ErrKeyNotFound) && !present:
			return projections.SyncInstruction{}
		case err != nil && !errors.Is(err, jetstream.ErrKeyNotFound):
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("bucket key %s present %v, want %v", key, !present, present)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestSyncRebuildReconciles: a rebuild's instructions follow its own batch
// boundaries, so a bucket key the run before it left (its last put, or one
// a crash cut off from its clear) may have no instruction of the rebuild to
// replace it. Once the rebuild has caught up, every key of the bucket says
// what the read model calls for: a stale key of a SKU with nothing due is
// deleted, a key with other figures is put right.
func TestSyncRebuildReconciles(t *testing.T) {
	nc, js, pub := startStreams(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := consumers.NewProjector(nc, js, projections.NewMemoryStore(), consumers.Options{Log: testLog(t), SkipPublishedAlerts: true})
	stop := runProjector(t, p)
	publish(t, pub, listing("s1", "a", 10), sale("s1", "a", "o-1", 2), listing("s1", "b", 5))
	last := publish(t, pub, ledger.Event{Type: ledger.Recount, Shop: "s1", SKU: "a", Counted: ledger.Int64(5)})
	waitApplied(t, p, last)
	want := waitTarget(t, js, "s1.a", true)
	stop()

	// What a crashed run could leave: b's target (b has nothing due) and
	// a's with figures the read model does not have.
	kv, err := js.KeyValue(ctx, transport.SyncTargetsBucket)
	if err != nil {
		t.Fatal(err)
	}
	stale := map[string]projections.SyncInstruction{
		"s1.b": {Shop: "s1", SKU: "b", Listed: 9, Sellable: 0, Delta: -9, Seq: 3, Key: projections.SyncKey("s1", "b", 3)},
		"s1.a": {Shop: "s1", SKU: "a", Listed: 47, Sellable: 26, Delta: -21, Seq: 2, Key: projections.SyncKey("s1", "a", 2)},
	}
	for key, in := range stale {
		data, _ := json.Marshal(in)
		if _, err := kv.Put(ctx, key, data); err != nil {
			t.Fatal(err)
		}
	}

	p2 := consumers.NewProjector(nc, js, projections.NewMemoryStore(), consumers.Options{Log: testLog(t), SkipPublishedAlerts: true})
	runProjector(t, p2)
	waitApplied(t, p2, last)
	waitTarget(t, js, "s1.b", false)
	deadline := time.Now().Add(10 * time.Second)
	for got := waitTarget(t, js, "s1.a", true); got != want; got = waitTarget(t, js, "s1.a", true) {
		if time.Now().After(deadline) {
			t.Fatalf("s1.a target %+v after the rebuild, want %+v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
