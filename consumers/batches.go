package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger/transport"
	"stockledger/projections"
)

// Batch loop bounds.
const (
	// ackWait is how long the server waits for an ack before redelivering.
	ackWait = 30 * time.Second
	// pullFactor sizes the client's pull buffer: that many times BatchMax
	// messages.
	pullFactor = 2
	// pullHeartbeat is how often the server tells an idle pull it is alive;
	// two missed heartbeats end the pull with an error, and the session.
	// Short, because a pull whose request died with a NATS server (or went
	// to a consumer that had no leader yet) gets nothing else: at 5 s the
	// failover test saw partitions stall 10 s that way.
	pullHeartbeat = time.Second
	// fillWaitMax bounds the wait for messages the stream holds but the
	// client has not received yet, before a batch is committed short.
	fillWaitMax = 5 * time.Millisecond
	// restartWait is the wait before a consumer session that failed starts
	// again.
	restartWait = time.Second
	// consumerLookupTimeout bounds one lookup or deletion of the durable
	// consumer, consumerCreateTimeout its creation. While NATS elects a
	// leader (of the stream, the consumer or the meta group) these get no
	// answer: the session fails after the bound and starts again after
	// restartWait, instead of waiting out the client's default API timeout.
	consumerLookupTimeout = time.Second
	consumerCreateTimeout = 3 * time.Second
)

// pipeline is what the batch loop feeds, on the loop's goroutine alone:
// the projector's fold, its one write in flight and the ship-promise sweep.
type pipeline interface {
	// checkpoint returns the store's checkpoint as far as the fold loop
	// knows it.
	checkpoint() uint64
	// apply folds fresh, the messages of batch past what is folded (the
	// last at lastSeq), lands the write before and starts the batch's. An
	// error other than errReset left the folded states as they were.
	apply(ctx context.Context, batch []jetstream.Msg, fresh []delivery, lastSeq uint64) error
	// landed is closed when the write in flight has ended; nil when none is.
	landed() <-chan struct{}
	// drain waits for the write in flight, if any, and lands it.
	drain(ctx context.Context, keep []*projections.SKU) error
	// sweep lands the write in flight, then commits the ship-promise sweep.
	sweep(ctx context.Context) error
}

// batchLoop consumes the event stream from the durable pull consumer and
// feeds the pipeline: it (re)creates the consumer at the checkpoint, pulls
// and decodes on a reader goroutine, fills batches, checks that sequences
// arrive without a gap, skips what was folded before, and acknowledges
// batches. Its goroutine is the fold loop: the pipeline runs on it too.
type batchLoop struct {
	js         jetstream.JetStream
	name       string // of the durable consumer (Options.Name)
	filter     string // Options.FilterSubject
	batchMax   int
	catchUpMax int
	sweepEvery time.Duration
	dec        decoder
	pipe       pipeline
	health     *health
	log        *slog.Logger
	// strict: the consumer reads the whole stream, so stream sequences
	// arrive without a gap.
	strict bool
	// folded is the last stream sequence folded (committed or in flight);
	// delivered the consumer sequence of the last delivery seen (see
	// checkDelivery). Each session starts them over.
	folded, delivered uint64
}

func newBatchLoop(js jetstream.JetStream, o Options, pipe pipeline, h *health, log *slog.Logger) *batchLoop {
	return &batchLoop{
		js: js, name: o.Name, filter: o.FilterSubject,
		batchMax: o.BatchMax, catchUpMax: o.CatchUpMax, sweepEvery: o.SweepEvery,
		dec:  decoder{own: ownership{partitions: o.Partitions, part: o.Partition}},
		pipe: pipe, health: h, log: log,
		strict: o.FilterSubject == transport.EventSubjectRoot+".>",
	}
}

// run runs consumer sessions until ctx ends: a session that fails is
// started again at the checkpoint after restartWait.
func (bl *batchLoop) run(ctx context.Context) {
	for ctx.Err() == nil {
		err := bl.session(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		bl.health.set(err)
		bl.log.Warn("projector restarting its consumer", "err", err, "checkpoint", bl.pipe.checkpoint())
		if !sleep(ctx, restartWait) {
			return
		}
	}
}

// session (re)creates the durable consumer at the checkpoint and folds
// batches until ctx ends or the consumer must be made again.
func (bl *batchLoop) session(ctx context.Context) error {
	ckpt := bl.pipe.checkpoint()
	cons, err := bl.consumer(ctx, ckpt)
	if err != nil {
		return err
	}
	// The consumer delivers from ckpt+1: the drain that ended the last
	// session landed what was in flight, or reset to the checkpoint.
	bl.folded, bl.delivered = ckpt, cons.CachedInfo().Delivered.Consumer
	it, err := cons.Messages(jetstream.PullMaxMessages(pullFactor*bl.batchMax), jetstream.PullHeartbeat(pullHeartbeat))
	if err != nil {
		return fmt.Errorf("start pulling: %w", err)
	}
	defer it.Stop()
	msgs, readErr := bl.read(it)
	defer func() {
		it.Stop()
		for range msgs { // let the reader exit; these stay unacknowledged
		}
	}()
	// A batch in flight when the session ends is waited for and landed:
	// committed and acknowledged, or left unacknowledged, never half-applied.
	defer func() {
		if err := bl.pipe.drain(context.WithoutCancel(ctx), nil); err != nil && ctx.Err() == nil {
			bl.log.Warn("last batch not committed", "err", err)
		}
	}()
	return bl.loop(ctx, msgs, readErr)
}

// read starts the reader goroutine: it pulls from it and decodes each
// message onto msgs, which it closes when it is stopped or fails (the
// error on readErr). msgs is bounded: when the fold falls behind, the
// reader blocks and the client stops pulling. It holds a catch-up batch, so
// that the reader decodes the next one while the fold works on this one.
func (bl *batchLoop) read(it jetstream.MessagesContext) (<-chan jetstream.Msg, <-chan error) {
	msgs := make(chan jetstream.Msg, bl.catchUpMax)
	readErr := make(chan error, 1)
	go func() {
		defer close(msgs)
		for {
			m, err := it.Next()
			if err != nil {
				if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					readErr <- err
				}
				return
			}
			// Decoding and validating here overlaps them with the fold
			// loop's commit of the batch before.
			msgs <- bl.dec.predecode(m)
		}
	}()
	return msgs, readErr
}

// loop is the fold loop: it hands each batch to the pipeline, lands writes
// as they end and sweeps every sweepEvery, until ctx ends or an error ends
// the session.
func (bl *batchLoop) loop(ctx context.Context, msgs <-chan jetstream.Msg, readErr <-chan error) error {
	sweep := time.NewTicker(bl.sweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			return fmt.Errorf("read messages: %w", err)
		case <-bl.pipe.landed():
			if err := bl.pipe.drain(ctx, nil); err != nil {
				return err
			}
		case <-sweep.C:
			if err := bl.pipe.sweep(ctx); err != nil {
				return err
			}
		case m, ok := <-msgs:
			if !ok {
				select {
				case err := <-readErr:
					return fmt.Errorf("read messages: %w", err)
				default:
					return errors.New("message iterator closed")
				}
			}
			// A new slice per batch: the one in flight keeps its own.
			batch := make([]jetstream.Msg, 1, bl.batchMax)
			batch[0] = m
			if err := bl.process(ctx, bl.fill(batch, msgs)); err != nil {
				return err
			}
		}
	}
}

// fill adds to batch what msgs holds, up to batchMax, or up to catchUpMax
// when the projector is at least batchMax messages behind (read and not
// folded, or still in the stream). While the stream holds more for this
// consumer (the last message's NumPending), it waits up to fillWaitMax for
// it rather than committing a short batch: behind, batches are full and
// each commit's fixed cost is paid once per batch; caught up, nothing is
// pending and nothing waits.
func (bl *batchLoop) fill(batch []jetstream.Msg, msgs <-chan jetstream.Msg) []jetstream.Msg {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	// Behind: what the reader holds decoded, plus what the stream held
	// past the first message when it was delivered.
	limit := bl.batchMax
	if meta, err := batch[0].Metadata(); err == nil && uint64(len(msgs))+meta.NumPending >= uint64(bl.batchMax) {
		limit = bl.catchUpMax
	}
	for len(batch) < limit {
		select {
		case m, ok := <-msgs:
			if !ok {
				return batch
			}
			batch = append(batch, m)
			continue
		default:
		}
		meta, err := batch[len(batch)-1].Metadata()
		if err != nil || meta.NumPending == 0 {
			return batch
		}
		if timer == nil {
			timer = time.NewTimer(fillWaitMax)
		}
		select {
		case m, ok := <-msgs:
			if !ok {
				return batch
			}
			batch = append(batch, m)
		case <-timer.C:
			return batch
		}
	}
	return batch
}

// consumer returns the durable consumer positioned right after the
// checkpoint ckpt. An existing consumer is reused only when it agrees with
// the checkpoint and has nothing unacknowledged; otherwise it is made
// again, so that nothing waits out an ack timeout after a restart.
func (bl *batchLoop) consumer(ctx context.Context, ckpt uint64) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:     bl.name,
		Description: "stock ledger projector",
		AckPolicy:   jetstream.AckAllPolicy,
		AckWait:     ackWait,
		MaxDeliver:  -1,
		// Unacknowledged at most: a batch in flight, one folded, the
		// reader's channel and the client's pull buffer.
		MaxAckPending: 3*bl.catchUpMax + pullFactor*bl.batchMax,
		FilterSubject: bl.filter,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if ckpt > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = ckpt + 1
	}
	lctx, cancel := context.WithTimeout(ctx, consumerLookupTimeout)
	defer cancel()
	if c, err := bl.js.Consumer(lctx, transport.EventStream, bl.name); err == nil {
		info := c.CachedInfo()
		if info.AckFloor.Stream == ckpt && info.NumAckPending == 0 && info.Config.FilterSubject == bl.filter {
			return c, nil
		}
		dctx, cancel := context.WithTimeout(ctx, consumerLookupTimeout)
		defer cancel()
		if err := bl.js.DeleteConsumer(dctx, transport.EventStream, bl.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("delete consumer %s to restart it at seq %d: %w", bl.name, ckpt+1, err)
		}
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("look up consumer %s: %w", bl.name, err)
	}
	cctx, cancel := context.WithTimeout(ctx, consumerCreateTimeout)
	defer cancel()
	c, err := bl.js.CreateConsumer(cctx, transport.EventStream, cfg)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s at seq %d: %w", bl.name, ckpt+1, err)
	}
	return c, nil
}

// ackedBefore returns how far the durable consumer had acknowledged before
// this start, 0 when it does not exist (or cannot be read: then nothing is
// skipped, and a rebuild may publish again what it published before, which
// consumers of the alert stream tell apart by Nats-Msg-Id).
func (bl *batchLoop) ackedBefore(ctx context.Context) uint64 {
	ctx, cancel := context.WithTimeout(ctx, consumerLookupTimeout)
	defer cancel()
	c, err := bl.js.Consumer(ctx, transport.EventStream, bl.name)
	if err != nil {
		return 0
	}
	return c.CachedInfo().AckFloor.Stream
}

// process hands a batch to the pipeline. A batch that fails before its
// write began (the store unreachable for a load) is retried until it folds
// or ctx ends; a gap or a reset ends the consumer session, which restarts
// at the checkpoint.
func (bl *batchLoop) process(ctx context.Context, batch []jetstream.Msg) error {
	wait := retryWaitMin
	for {
		err := bl.handle(ctx, batch)
		if err == nil {
			return nil
		}
		var gap *gapError
		if errors.As(err, &gap) || errors.Is(err, errReset) {
			return err
		}
		bl.health.set(err)
		bl.log.Warn("batch not folded; retrying", "err", err, "checkpoint", bl.pipe.checkpoint(), "wait", wait)
		if !sleep(ctx, wait) {
			return nil
		}
		wait = min(2*wait, retryWaitMax)
	}
}

// handle does the work of process once: it admits the batch's new
// messages and has the pipeline fold them, or, when all were folded
// before, acknowledges the batch again once what is in flight has landed
// (AckAll would acknowledge it too).
func (bl *batchLoop) handle(ctx context.Context, batch []jetstream.Msg) error {
	fresh, lastSeq, err := bl.admit(batch)
	if err != nil {
		return err
	}
	if len(fresh) == 0 {
		if err := bl.pipe.drain(ctx, nil); err != nil {
			return err
		}
		bl.ack(batch)
		return nil
	}
	if err := bl.pipe.apply(ctx, batch, fresh, lastSeq); err != nil {
		return err
	}
	bl.folded = lastSeq
	return nil
}

// admit checks the sequences of a batch and returns its messages past what
// is folded, decoded, with the last stream sequence among them. Messages
// at or below folded are redeliveries, applied before.
func (bl *batchLoop) admit(batch []jetstream.Msg) ([]delivery, uint64, error) {
	var (
		fresh   = make([]delivery, 0, len(batch))
		next    = bl.folded + 1
		lastSeq = bl.folded
	)
	for _, m := range batch {
		meta, err := m.Metadata()
		if err != nil {
			return nil, 0, fmt.Errorf("message metadata: %w", err)
		}
		if !bl.strict {
			if err := bl.checkDelivery(meta); err != nil {
				return nil, 0, err
			}
		}
		seq := meta.Sequence.Stream
		if seq < next {
			continue // applied before: a redelivery
		}
		if bl.strict && seq != next {
			return nil, 0, &gapError{want: next, got: seq}
		}
		next, lastSeq = seq+1, seq
		e, reason := bl.dec.decodeOnce(m, meta)
		fresh = append(fresh, delivery{msg: m, seq: seq, event: e, reason: reason})
	}
	return fresh, lastSeq, nil
}

// gapError reports a sequence that did not follow the one before: a
// message lost on the way. The session ends and restarts at the checkpoint.
type gapError struct {
	want, got uint64
	consumer  bool // consumer (delivery) sequences, not stream sequences
}

// Error says which sequence was expected and which came.
func (g *gapError) Error() string {
	if g.consumer {
		return fmt.Sprintf("delivery gap: expected consumer sequence %d, got %d", g.want, g.got)
	}
	return fmt.Sprintf("stream sequence gap: expected %d, got %d", g.want, g.got)
}

// checkDelivery guards a filtered consumer (a partition), whose stream
// sequences have holes by design: the server numbers every delivery of the
// consumer, redeliveries included, so a delivery lost on the way (a server
// of the cluster dying with it in flight) shows as a jump in the consumer
// sequence. Acknowledging past it (AckAll) would lose the message for good:
// the consumer is restarted at the checkpoint instead. A step back (a new
// consumer leader resending what its predecessor had not replicated)
// restarts the count; the stream sequence check skips what was applied.
func (bl *batchLoop) checkDelivery(meta *jetstream.MsgMetadata) error {
	dseq := meta.Sequence.Consumer
	if dseq > bl.delivered+1 {
		return &gapError{want: bl.delivered + 1, got: dseq, consumer: true}
	}
	bl.delivered = dseq
	return nil
}

// ack acknowledges a batch once it is committed (or was before). AckAll:
// acknowledging the last message acknowledges the batch. A lost ack only
// means a redelivery, which the checkpoint skips.
func (bl *batchLoop) ack(batch []jetstream.Msg) {
	if err := batch[len(batch)-1].Ack(); err != nil {
		bl.log.Warn("ack failed; the batch will be redelivered and skipped", "err", err)
	}
}
