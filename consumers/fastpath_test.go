package consumers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"stockledger/consumers"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// hidingStore is a memory store whose alert outbox reads find nothing
// while hide is set: only the fast path can publish then.
type hidingStore struct {
	*projections.MemoryStore
	hide atomic.Bool
}

func (h *hidingStore) PendingAlerts(ctx context.Context, limit int) ([]projections.OutboxAlert, error) {
	if h.hide.Load() {
		return nil, nil
	}
	return h.MemoryStore.PendingAlerts(ctx, limit)
}

// TestAlertFastPath: once the outbox has been drained, each batch's alert
// changes are published from memory as it commits, without reading the
// outbox back: with every outbox read finding nothing, the stream still
// holds every change once, each alert's in revision order. Once the reads
// see the outbox again, it is emptied behind them.
func TestAlertFastPath(t *testing.T) {
	nc, js, pub := startStreams(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store := &hidingStore{MemoryStore: projections.NewMemoryStore()}
	p := consumers.NewProjector(nc, js, store, consumers.Options{Log: testLog(t)})
	runProjector(t, p)
	waitApplied(t, p, publish(t, pub, listing("s1", "a", 1)))
	store.hide.Store(true)
	// Each sale past the one unit on hand changes the oversold alert: one
	// change per batch, as each is published after the one before landed.
	const batches = 60
	var last uint64
	for i := range batches {
		last = publish(t, pub, sale("s1", "a", fmt.Sprintf("o-%d", i), 1))
		waitApplied(t, p, last)
	}
	revs := waitAlertRevs(t, js, batches-1)
	for i, rev := range revs {
		if rev != i+1 {
			t.Fatalf("alert revisions on the stream %v: want 1, 2, 3, … once each", revs)
		}
	}
	store.hide.Store(false)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		pending, err := store.MemoryStore.PendingAlerts(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Error("the alert outbox was not emptied behind the fast path")
}

// waitAlertRevs waits until the alert stream holds at least n changes and
// returns their revisions in stream order.
func waitAlertRevs(t *testing.T, js jetstream.JetStream, n int) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		st, err := js.Stream(ctx, transport.AlertStream)
		if err != nil {
			t.Fatal(err)
		}
		if int(st.CachedInfo().State.Msgs) >= n {
			var revs []int
			for seq := uint64(1); seq <= st.CachedInfo().State.LastSeq; seq++ {
				m, err := st.GetMsg(ctx, seq)
				if err != nil {
					t.Fatal(err)
				}
				var a projections.Alert
				if err := json.Unmarshal(m.Data, &a); err != nil {
					t.Fatal(err)
				}
				revs = append(revs, a.Rev)
			}
			return revs
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the alert stream holds %d changes, want %d", st.CachedInfo().State.Msgs, n)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
