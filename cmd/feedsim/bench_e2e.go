package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"stockledger/consumers"
	"stockledger/ledger"
	"stockledger/ledger/transport"
)

// End-to-end phase settings.
const (
	// rssMarkEvery is how often (in events applied) the e2e phase records
	// the process's RSS.
	rssMarkEvery = 500_000
)

// benchE2E publishes the feed through the ledger's publisher as fast as it
// goes and waits until the projector has applied every event.
func benchE2E(ctx context.Context, bc benchConfig, g *generator, pub *transport.Publisher, proj *consumers.Projector, alerts *alertWatch, r *modeResult) error {
	var last, dups atomic.Uint64
	onAck := func(_ ledger.Event, a transport.Ack, _ time.Time) {
		if a.Seq > last.Load() {
			last.Store(a.Seq)
		}
		if a.Duplicate {
			dups.Add(1) // a re-send within the stream's duplicate window
		}
	}
	r.RSSMB, r.LiveHeapMB, r.OrdersHeld = map[string]float64{}, map[string]float64{}, map[string]int64{}
	stopMarks := make(chan struct{})
	marksDone := make(chan struct{})
	go func() {
		defer close(marksDone)
		mark := uint64(rssMarkEvery)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopMarks:
				return
			case <-t.C:
			}
			if proj.Applied() >= mark {
				rss, live := rssMB("VmRSS"), liveHeapMB()
				_, held := proj.Held()
				r.RSSMB[fmt.Sprint(mark)], r.LiveHeapMB[fmt.Sprint(mark)], r.OrdersHeld[fmt.Sprint(mark)] = rss, live, held
				bc.logf(r.Mode, "e2e: %d events applied, RSS %.0f MB, live heap %.0f MB, orders held by the projector %d", mark, rss, live, held)
				mark += rssMarkEvery
			}
		}
	}()
	lag := func() string { return fmt.Sprint(last.Load() - min(last.Load(), proj.Applied())) }
	begin := time.Now()
	n, err := publishPaced(ctx, pub, g, rateMax, durationMax, bc.sz.E2EEvents, bc.progress, lag, alerts.open, onAck)
	if err != nil {
		close(stopMarks)
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, catchUpMax)
	defer cancel()
	err = proj.WaitApplied(wctx, last.Load())
	elapsed := time.Since(begin)
	close(stopMarks)
	<-marksDone
	if err != nil {
		return err
	}
	r.E2EEvents, r.E2EDuplicates = last.Load(), dups.Load()
	r.E2EEPS = float64(n) / elapsed.Seconds()
	r.RSSMB[fmt.Sprintf("%d (end)", r.E2EEvents)] = rssMB("VmRSS")
	r.LiveHeapMB[fmt.Sprintf("%d (end)", r.E2EEvents)] = liveHeapMB()
	return nil
}

// outboxBacklog counts the alert changes waiting in the outbox; -1 when it
// cannot tell.
func outboxBacklog(ctx context.Context, url, schema string) int64 {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return -1
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, "alert_outbox"}.Sanitize()).Scan(&n); err != nil {
		return -1
	}
	return n
}
