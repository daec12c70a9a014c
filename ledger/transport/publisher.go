package transport

import (
	"context"
	"errors"
	"fmt"
	"stockledger/ledger"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// Publisher bounds.
const (
	// DefaultMaxInFlight bounds asynchronous publishes awaiting their ack.
	// When it is reached, PublishMsgAsync waits (up to the stall wait) for
	// acks before sending more.
	DefaultMaxInFlight = 4096
	// publishAttemptsMax bounds the attempts of one event's publish; every
	// retry carries the same Nats-Msg-Id, so a publish that did land while
	// its ack was lost is stored once.
	publishAttemptsMax = 5
	// retryWaitMax bounds the wait between two attempts.
	retryWaitMax = 2 * time.Second
)

// Ack is the stream's answer for one published event.
type Ack struct {
	ID string `json:"id"`
	// Seq is the event's sequence in STOCK_EVENTS; for a duplicate, the
	// sequence of the copy stored first.
	Seq uint64 `json:"seq"`
	// Duplicate is true when the stream already held this idempotency key.
	Duplicate bool `json:"duplicate,omitempty"`
}

// PublisherOptions configure a Publisher.
type PublisherOptions struct {
	// MaxInFlight bounds unacknowledged asynchronous publishes; zero means
	// DefaultMaxInFlight.
	MaxInFlight int
	// AckTimeout bounds the wait for one publish's ack; zero means 5s.
	AckTimeout time.Duration
	// Now is the ingest clock used for a missing `at`; nil means time.Now.
	Now func() time.Time
	// AtomicBatches publishes the events of one call as a JetStream atomic
	// batch (STOCK_EVENTS allows them): one commit, and under sync-always
	// one fsync, for the whole batch instead of one per event; and all of
	// a batch is stored or none of it. A batch the server refuses (one
	// holding an idempotency key already stored: a retry) is published
	// event by event instead, which stores each duplicate once. Worth it
	// under sync-always; with JetStream's default sync interval plain
	// asynchronous publishing is faster.
	AtomicBatches bool
}

// Publisher is the idempotent Go client an order feed publishes events with.
// It is safe for concurrent use.
type Publisher struct {
	js      jetstream.JetStream
	history *History
	timeout time.Duration
	now     func() time.Time
	atomic  bool
}

// NewPublisher returns a Publisher over the NATS connection nc.
func NewPublisher(nc *nats.Conn, o PublisherOptions) (*Publisher, error) {
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(o.MaxInFlight), jetstream.WithPublishAsyncTimeout(o.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream context: %w", err)
	}
	return &Publisher{js: js, history: NewHistory(js), timeout: o.AckTimeout, now: o.Now, atomic: o.AtomicBatches}, nil
}

// JetStream returns the JetStream context the publisher uses.
func (p *Publisher) JetStream() jetstream.JetStream { return p.js }

// Admit normalizes (fresh id, ingest time for a missing at) and validates a
// batch: every problem of every event at once, and an `at` too far ahead of
// the ingest clock. A batch that fails must not be published.
func (p *Publisher) Admit(events []ledger.Event) error {
	if len(events) > ledger.MaxBatch {
		return &ledger.FieldError{Field: "body", Value: fmt.Sprintf("%d events", len(events)), Rule: fmt.Sprintf("a batch holds at most %d events", ledger.MaxBatch)}
	}
	now := p.now()
	var errs []error
	for i := range events {
		events[i].Normalize(now)
		if err := events[i].CheckClock(now); err != nil {
			for _, fe := range ledger.FieldErrors(err) {
				fe.Index = i
			}
			errs = append(errs, err)
		}
	}
	if err := ledger.ValidateBatch(events); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Publish admits the batch (Admit) and publishes it asynchronously, in order, with
// each event's idempotency key as Nats-Msg-Id, and waits for every ack. An
// invalid batch publishes nothing. On a publish error it returns the acks
// gathered so far (zero Seq for events not known to be stored) and the error;
// publishing the same events again is safe.
func (p *Publisher) Publish(ctx context.Context, events []ledger.Event) ([]Ack, error) {
	if err := p.Admit(events); err != nil {
		return nil, err
	}
	return p.publishAdmitted(ctx, events)
}

func (p *Publisher) publishAdmitted(ctx context.Context, events []ledger.Event) ([]Ack, error) {
	if p.atomic && len(events) > 1 {
		if acks, err := p.publishAtomic(ctx, events); err == nil {
			return acks, nil
		}
		// Refused or unanswered: event by event, with the same keys, is
		// safe whether the batch was stored or not.
	}
	futures := make([]jetstream.PubAckFuture, len(events))
	for i := range events {
		msg, err := eventMsg(&events[i])
		if err != nil {
			return nil, err
		}
		f, err := p.js.PublishMsgAsync(msg, jetstream.WithMsgID(events[i].Key()), jetstream.WithExpectStream(EventStream))
		if err != nil {
			// Not sent: the sync path below retries it.
			futures[i] = nil
			continue
		}
		futures[i] = f
	}
	acks := make([]Ack, len(events))
	for i, f := range futures {
		acks[i].ID = events[i].ID
		var ack *jetstream.PubAck
		if f != nil {
			select {
			case ack = <-f.Ok():
			case <-f.Err():
			case <-ctx.Done():
				return acks, fmt.Errorf("publish event %s: %w", events[i].ID, ctx.Err())
			}
		}
		if ack == nil {
			var err error
			if ack, err = p.publishSync(ctx, &events[i]); err != nil {
				return acks, err
			}
		}
		acks[i].Seq, acks[i].Duplicate = ack.Sequence, ack.Duplicate
	}
	return acks, nil
}

// publishAtomic publishes events as one atomic batch. The stream stores a
// batch's messages consecutively, so each event's sequence follows from the
// commit's.
func (p *Publisher) publishAtomic(ctx context.Context, events []ledger.Event) ([]Ack, error) {
	msgs := make([]*nats.Msg, len(events))
	for i := range events {
		msg, err := eventMsg(&events[i])
		if err != nil {
			return nil, err
		}
		msg.Header = nats.Header{}
		msg.Header.Set(jetstream.MsgIDHeader, events[i].Key())
		msgs[i] = msg
	}
	actx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	ack, err := jetstreamext.PublishMsgBatch(actx, p.js, msgs)
	if err != nil {
		return nil, fmt.Errorf("publish %d events as an atomic batch: %w", len(events), err)
	}
	n := uint64(len(events))
	if ack.Stream != EventStream || ack.BatchSize != n || ack.Sequence < n {
		return nil, fmt.Errorf("atomic batch of %d events acknowledged as %d ending at seq %d of %q", n, ack.BatchSize, ack.Sequence, ack.Stream)
	}
	acks := make([]Ack, len(events))
	for i := range events {
		acks[i] = Ack{ID: events[i].ID, Seq: ack.Sequence - n + 1 + uint64(i)}
	}
	return acks, nil
}

// publishSync publishes one event, retrying with the same Nats-Msg-Id and a
// bounded backoff.
func (p *Publisher) publishSync(ctx context.Context, e *ledger.Event, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	msg, err := eventMsg(e)
	if err != nil {
		return nil, err
	}
	opts = append(opts, jetstream.WithMsgID(e.Key()), jetstream.WithExpectStream(EventStream))
	wait := 50 * time.Millisecond
	var lastErr error
	for attempt := 1; attempt <= publishAttemptsMax; attempt++ {
		actx, cancel := context.WithTimeout(ctx, p.timeout)
		ack, err := p.js.PublishMsg(actx, msg, opts...)
		cancel()
		if err == nil {
			return ack, nil
		}
		lastErr = err
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) || ctx.Err() != nil {
			// The server answered with a refusal (a conflict, a full
			// stream): retrying would get the same answer.
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("publish event %s: %w", e.ID, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, retryWaitMax)
	}
	return nil, fmt.Errorf("publish event %s to %s: %w", e.ID, EventSubject(e.Shop, e.SKU), lastErr)
}

func eventMsg(e *ledger.Event) (*nats.Msg, error) {
	data, err := ledger.EncodeEvent(e)
	if err != nil {
		return nil, err
	}
	return &nats.Msg{Subject: EventSubject(e.Shop, e.SKU), Data: data}, nil
}

// IsWrongLastSequence reports whether err is JetStream's refusal of a publish
// whose expected last subject sequence did not match: on one server and on a
// replicated stream alike.
func IsWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}
