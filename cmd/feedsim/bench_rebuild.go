package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/consumers"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// benchRebuild rebuilds the read model from the whole event stream into a
// fresh schema (dropped with the bench's, see benchSchema) with a new
// projector, until it has applied the last event.
func benchRebuild(ctx context.Context, bc benchConfig, js jetstream.JetStream, nc *nats.Conn, schema string, r *modeResult) error {
	st, err := js.Stream(ctx, transport.EventStream)
	if err != nil {
		return err
	}
	last := st.CachedInfo().State.LastSeq
	store, err := projections.OpenPostgres(ctx, bc.databaseURL, projections.PostgresOptions{Schema: schema + "_rebuild"})
	if err != nil {
		return err
	}
	defer store.Close()
	proj := consumers.NewProjector(nc, js, store, consumers.Options{Name: "rebuild", Log: slog.New(slog.DiscardHandler)})
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	begin := time.Now()
	go func() { done <- proj.Run(pctx) }()
	wctx, cancel := context.WithTimeout(ctx, catchUpMax)
	err = proj.WaitApplied(wctx, last)
	elapsed := time.Since(begin)
	cancel()
	stop()
	if perr := <-done; perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return err
	}
	r.RebuildEvents = last
	r.RebuildEPS = float64(last) / elapsed.Seconds()
	return nil
}
