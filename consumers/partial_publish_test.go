package consumers_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"stockledger/consumers"
	"stockledger/consumers/consumertest"
	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// TestAlertsAfterPartialPublish: a memory read model is killed halfway
// through publishing one batch's alert changes (the second half never
// reached the stream), and the next start rebuilds it from the stream in
// batches that end elsewhere. Every alert's last change must still reach
// the stream: the rebuild may pass over only what the stream's last message
// says was published through, not everything below that message's own
// batch.
func TestAlertsAfterPartialPublish(t *testing.T) {
	// A duplicate window of 1 s, so that what the rebuild publishes again
	// is stored rather than dropped as a repeat of the deleted messages.
	nc, js, pub := startStreams(t, time.Second)
	var events []ledger.Event
	skus := []string{"a", "b", "c", "d"}
	for _, sku := range skus {
		events = append(events, listing("s1", sku, 3))
	}
	// Fifteen sales of each: oversold from the fourth on, each sale a new
	// revision of its alert.
	for i := range 60 {
		events = append(events, sale("s1", skus[i%4], fmt.Sprintf("o-%d", i), 1))
	}
	// Then sales that change no alert, so that the alerts' last changes lie
	// well below the stream's last sequence.
	events = append(events, listing("s1", "z", 1000))
	for i := range 40 {
		events = append(events, sale("s1", "z", fmt.Sprintf("z-%d", i), 1))
	}
	last := publish(t, pub, events...)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	first := consumers.NewProjector(nc, js, projections.NewMemoryStore(), consumers.Options{Log: testLog(t), SkipPublishedAlerts: true, Fold: projections.DefaultFoldConfig()})
	stop := runProjector(t, first)
	waitApplied(t, first, last)
	l, err := consumertest.Read(ctx, js, projections.DefaultFoldConfig())
	if err != nil {
		t.Fatal(err)
	}
	if missing, err := l.WaitAlertsPublished(ctx, js); err != nil || len(missing) > 0 {
		t.Fatalf("first run: alert changes not published: %v %v", missing, err)
	}
	stop()

	// The kill: the later half of what the first run sent never arrived.
	st, err := js.Stream(ctx, transport.AlertStream)
	if err != nil {
		t.Fatal(err)
	}
	n := st.CachedInfo().State.LastSeq
	if n < 40 {
		t.Fatalf("the first run published %d alert changes, want 40 or more", n)
	}
	for seq := n/2 + 1; seq <= n; seq++ {
		if err := st.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	lastMsg, err := st.GetMsg(ctx, n/2)
	if err != nil {
		t.Fatal(err)
	}
	ckpt, _ := strconv.ParseUint(lastMsg.Header.Get(transport.HeaderCheckpoint), 10, 64)
	through := lastMsg.Header.Get(transport.HeaderPublishedThrough)
	t.Logf("after the cut: %d alert messages, the last of batch %d, published through %s", n/2, ckpt, through)
	time.Sleep(1100 * time.Millisecond) // past the duplicate window

	// The restart: batches of 5, every one but the last ending below the
	// cut message's batch.
	second := consumers.NewProjector(nc, js, projections.NewMemoryStore(), consumers.Options{Log: testLog(t), SkipPublishedAlerts: true, Fold: projections.DefaultFoldConfig(), BatchMax: 5, CatchUpMax: 5})
	runProjector(t, second)
	waitApplied(t, second, last)
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	missing, err := l.WaitAlertsPublished(wctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Errorf("after the restart, %d alert changes never reached the stream: %v", len(missing), missing)
	}
}
