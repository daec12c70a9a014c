package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger"
	"stockledger/ledger/transport"
)

// Raw baseline settings.
const (
	// rawInFlight is the async publish window of the raw baseline: the
	// ledger publisher's own default, so that both sides get the same.
	rawInFlight = transport.DefaultMaxInFlight
	// rawStream and rawSubjectRoot hold the raw baseline's copy of the feed.
	rawStream      = "RAW_EVENTS"
	rawSubjectRoot = "raw.events"
)

// benchRaw measures the engine alone: async publish of the feed's payloads
// to a stream configured as STOCK_EVENTS, an ordered consumer reading them
// back, and synchronous publishing one message at a time.
func benchRaw(ctx context.Context, bc benchConfig, nc *nats.Conn, r *modeResult) error {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(rawInFlight), jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		return err
	}
	cfg := transport.EventStreamConfig(transport.StreamOptions{})
	cfg.Name, cfg.Subjects = rawStream, []string{rawSubjectRoot + ".>"}
	stream, err := js.CreateStream(ctx, cfg)
	if err != nil {
		return fmt.Errorf("create stream %s: %w", rawStream, err)
	}
	defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), rawStream) }()

	feed, err := newRawFeed(bc.gen)
	if err != nil {
		return err
	}
	n := bc.sz.RawEvents
	if r.RawPublishEPS, err = rawPublishAsync(ctx, js, feed, n); err != nil {
		return err
	}
	// The stream keeps a re-send within its duplicate window out: read
	// back what it stored.
	info, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s info: %w", rawStream, err)
	}
	if r.RawReadEPS, err = rawReadBack(ctx, stream, int(info.State.Msgs)); err != nil {
		return err
	}
	// Synchronous, one message at a time: what a feed without batching or
	// async gets, and the yardstick of the SyncAlways target.
	r.RawSyncPublishEPS, err = rawPublishSync(ctx, js, feed, bc.sz.RawSyncSeconds)
	return err
}

// rawFeed hands out the feed as the raw baseline publishes it: the setup,
// then the generator's events, each as a message on rawSubjectRoot.
type rawFeed struct {
	g       *generator
	pending []ledger.Event
}

func newRawFeed(c genConfig) (*rawFeed, error) {
	g, err := newGenerator(c)
	if err != nil {
		return nil, err
	}
	return &rawFeed{g: g, pending: g.Setup()}, nil
}

// next returns the next event's message and its message id.
func (f *rawFeed) next() (*nats.Msg, jetstream.PublishOpt, error) {
	for len(f.pending) == 0 {
		f.pending = f.g.Next(f.pending[:0:0])
	}
	e := f.pending[0]
	f.pending = f.pending[1:]
	return rawMsg(&e)
}

// rawMsg encodes e as the raw baseline's message, with the id the ledger's
// publisher would give it.
func rawMsg(e *ledger.Event) (*nats.Msg, jetstream.PublishOpt, error) {
	if e.ID == "" {
		return nil, nil, errors.New("event without id")
	}
	data, err := ledger.EncodeEvent(e)
	if err != nil {
		return nil, nil, err
	}
	return &nats.Msg{Subject: rawSubjectRoot + "." + e.Shop + "." + e.SKU, Data: data}, jetstream.WithMsgID(e.Key()), nil
}

// rawPublishAsync publishes n messages of feed asynchronously and returns
// the messages per second until the last is acknowledged.
func rawPublishAsync(ctx context.Context, js jetstream.JetStream, feed *rawFeed, n int) (float64, error) {
	begin := time.Now()
	for i := range n {
		if i%ledger.MaxBatch == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		m, opt, err := feed.next()
		if err != nil {
			return 0, err
		}
		if _, err := js.PublishMsgAsync(m, opt, jetstream.WithStallWait(30*time.Second)); err != nil {
			return 0, fmt.Errorf("publish async: %w", err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(catchUpMax):
		return 0, errors.New("async publishes not acknowledged in time")
	}
	return float64(n) / time.Since(begin).Seconds(), nil
}

// rawReadBack reads the first n messages of stream with an ordered consumer
// and returns the messages per second.
func rawReadBack(ctx context.Context, stream jetstream.Stream, n int) (float64, error) {
	begin := time.Now()
	oc, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return 0, err
	}
	it, err := oc.Messages(jetstream.PullMaxMessages(2000))
	if err != nil {
		return 0, err
	}
	for i := 0; i < n; i++ {
		if _, err := it.Next(); err != nil {
			it.Stop()
			return 0, fmt.Errorf("read back message %d: %w", i+1, err)
		}
	}
	it.Stop()
	return float64(n) / time.Since(begin).Seconds(), nil
}

// rawPublishSync publishes feed's messages one at a time, each waiting for
// its ack, for seconds, and returns the messages per second.
func rawPublishSync(ctx context.Context, js jetstream.JetStream, feed *rawFeed, seconds float64) (float64, error) {
	count := 0
	begin := time.Now()
	for time.Since(begin).Seconds() < seconds && ctx.Err() == nil {
		m, opt, err := feed.next()
		if err != nil {
			return 0, err
		}
		if _, err := js.PublishMsg(ctx, m, opt); err != nil {
			return 0, fmt.Errorf("publish: %w", err)
		}
		count++
	}
	return float64(count) / time.Since(begin).Seconds(), nil
}
