package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// Projector bounds and defaults.
const (
	// DefaultName names the durable consumer and the checkpoint.
	DefaultName = "ledger-projector"
	// DefaultBatchMax bounds the messages folded and committed together
	// while the projector keeps up.
	DefaultBatchMax = 1000
	// catchUpFactor sizes the batches of a projector that is behind (a
	// rebuild, a restart, a burst) when Options.CatchUpMax is 0: that many
	// times BatchMax. A larger batch writes each SKU, and each order sold
	// and shipped within it, once for many events.
	catchUpFactor = 10
	// DefaultCacheMax bounds the SKU states kept in memory between batches;
	// past it, states not in the current batch are dropped and reloaded
	// from the store when next needed.
	DefaultCacheMax = 200_000
	// DefaultSweepEvery is how often open orders are checked against their
	// ship promise.
	DefaultSweepEvery = time.Second
	// ackWait is how long the server waits for an ack before redelivering.
	ackWait = 30 * time.Second
	// retryWaitMin is the first wait before a failed batch is tried
	// again; it doubles with each failure up to retryWaitMax.
	retryWaitMin = 100 * time.Millisecond
	// retryWaitMax bounds the wait between attempts of a failed batch.
	retryWaitMax = 5 * time.Second
	// fillWaitMax bounds the wait for messages the stream holds but the
	// client has not received yet, before a batch is committed short.
	fillWaitMax = 5 * time.Millisecond
)

// Options configure a Projector. Zero values take the defaults above.
type Options struct {
	// Name of the durable consumer and of the checkpoint in the store.
	Name string
	// FilterSubject of the consumer; "" means every event subject. With the
	// whole stream, the projector checks that stream sequences arrive
	// without a gap.
	FilterSubject string
	BatchMax      int
	// CatchUpMax bounds a batch when the projector is at least BatchMax
	// messages behind; 0 means 10 × BatchMax, below BatchMax it is BatchMax.
	CatchUpMax int
	CacheMax   int
	SweepEvery time.Duration
	// Now is the clock of the ship-promise sweep; nil means time.Now.
	Now func() time.Time
	// Log receives one line per notable event; nil means slog.Default().
	Log *slog.Logger
	// SkipPublishedAlerts, for a store rebuilt from the stream at start (the
	// memory store), does not publish again alert changes whose batch
	// checkpoint lies below the one of the last alert message on the alert
	// stream: they were published before the restart.
	SkipPublishedAlerts bool
	// Fold is the fold's configuration (the sellout_soon threshold), given
	// to every SKU it loads.
	Fold projections.FoldConfig
	// ViewBucket, when set, names the key-value bucket (transport.ViewBucket)
	// that gets each changed SKU's view after every commit.
	ViewBucket string
	// Hooks observe batches and dead letters (metrics).
	Hooks Hooks
	// Partitions is the event stream's partition count (transport.EventPartitions);
	// 0 or 1 for an unpartitioned stream. With 2 or more, Partition names the
	// one this projector folds: the subject check expects the stored form
	// stock.events.<p>.<shop>.<sku>, and the ship-promise sweep touches only
	// SKUs of shops in this partition (another partition's projector owns
	// the rest, and a stale cached copy written here would undo its work).
	Partitions int
	Partition  int
}

// Projector folds the event stream into a Store. Run it once; its read
// methods (Applied, WaitApplied, ListingState, Health) are safe for
// concurrent use.
type Projector struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	store projections.Store
	o     Options
	log   *slog.Logger

	applied   *appliedSeq
	health    *health
	alerts    *alertPublisher
	bucket    *viewBucket // nil without Options.ViewBucket
	listeners []commitListener

	folder  *folder
	commits *committer
	// folded is the last sequence folded into the cache, ahead of the
	// checkpoint while a write is in flight.
	folded uint64
	dec    decoder
	deads  *deadLetters
	// delivered is the consumer sequence of the last delivery seen in this
	// consumer session (see checkDelivery).
	delivered uint64
}

// NewProjector returns a projector of the STOCK_EVENTS stream into store.
func NewProjector(nc *nats.Conn, js jetstream.JetStream, store projections.Store, o Options) *Projector {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.FilterSubject == "" {
		o.FilterSubject = transport.EventSubjectRoot + ".>"
	}
	if o.BatchMax <= 0 {
		o.BatchMax = DefaultBatchMax
	}
	if o.CatchUpMax <= 0 {
		o.CatchUpMax = catchUpFactor * o.BatchMax
	}
	o.CatchUpMax = max(o.CatchUpMax, o.BatchMax)
	if o.CacheMax <= 0 {
		o.CacheMax = DefaultCacheMax
	}
	if o.SweepEvery <= 0 {
		o.SweepEvery = DefaultSweepEvery
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	log := o.Log.With("projector", o.Name)
	p := &Projector{
		nc: nc, js: js, store: store, o: o, log: log,
		dec:     decoder{own: ownership{partitions: o.Partitions, part: o.Partition}},
		deads:   &deadLetters{js: js, hook: o.Hooks.DeadLettered, log: log},
		applied: newAppliedSeq(),
		health:  &health{},
		alerts:  newAlertPublisher(js, store, log),
		folder:  newFolder(store, o),
		commits: &committer{store: store, name: o.Name, log: log},
	}
	p.commits.health = p.health
	p.listeners = []commitListener{o.Hooks, p.applied, viewSubjects{nc: nc, log: log}}
	if o.ViewBucket != "" {
		p.bucket = newViewBucket(js, o.ViewBucket, log)
		p.listeners = append(p.listeners, p.bucket)
	}
	p.listeners = append(p.listeners, p.alerts)
	return p
}

// Held returns how many SKU states the projector holds in memory and how
// many orders they hold (open and early ones, and those closed since their
// batch was folded), as counted within the last second of work.
func (p *Projector) Held() (skus, orders int64) {
	return p.folder.held()
}

// Applied returns the last stream sequence committed to the store.
func (p *Projector) Applied() uint64 { return p.applied.load() }

// DeadLettered returns how many messages this process sent to the dead-letter
// stream.
func (p *Projector) DeadLettered() uint64 { return p.deads.sent() }

// WaitApplied waits until the projector has committed stream sequence seq,
// or ctx ends (its error returned).
func (p *Projector) WaitApplied(ctx context.Context, seq uint64) error {
	return p.applied.wait(ctx, seq)
}

// ListingState implements transport.Catalog from the store, once the projector
// has applied minSeq.
func (p *Projector) ListingState(ctx context.Context, shop, sku string, minSeq uint64) (ledger.ListingState, error) {
	if err := p.WaitApplied(ctx, minSeq); err != nil {
		return ledger.ListingState{}, err
	}
	return listingState(ctx, p.store, shop, sku)
}

// Err returns the error of the last failed batch while the projector cannot
// commit (the store is down, say), nil when it is healthy.
func (p *Projector) Err() error { return p.health.get() }

// Run consumes until ctx ends, then finishes the batch in hand (committed
// and acknowledged, or left unacknowledged, never half-applied) and
// returns nil. It returns an error only when it cannot go on.
func (p *Projector) Run(ctx context.Context) error {
	ckpt, err := p.store.Checkpoint(ctx, p.o.Name)
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	p.commits.ckpt, p.folded = ckpt, ckpt
	p.applied.set(ckpt)
	if p.o.SkipPublishedAlerts {
		p.alerts.skipPublished(ctx)
	}
	if p.bucket != nil {
		p.bucket.start(ctx)
	}
	p.log.Info("projector starting", "checkpoint", ckpt, "filter", p.o.FilterSubject)

	// Stopped last: it publishes what the last batches raised.
	stopAlerts := p.alerts.start(ctx)
	defer stopAlerts()

	for ctx.Err() == nil {
		err := p.consume(ctx)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		p.health.set(err)
		p.log.Warn("projector restarting its consumer", "err", err, "checkpoint", p.commits.ckpt)
		if !sleep(ctx, time.Second) {
			return nil
		}
	}
	return nil
}

// consume (re)creates the durable consumer at the checkpoint and folds
// batches until ctx ends or the consumer must be made again.
func (p *Projector) consume(ctx context.Context) error {
	cons, err := p.consumer(ctx)
	if err != nil {
		return err
	}
	p.delivered = cons.CachedInfo().Delivered.Consumer
	it, err := cons.Messages(jetstream.PullMaxMessages(2*p.o.BatchMax), jetstream.PullHeartbeat(5*time.Second))
	if err != nil {
		return fmt.Errorf("start pulling: %w", err)
	}
	defer it.Stop()
	// msgs is bounded: when the fold falls behind, the reader blocks and the
	// client stops pulling. It holds a catch-up batch, so that the reader
	// decodes the next one while the fold works on this one.
	msgs := make(chan jetstream.Msg, p.o.CatchUpMax)
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
			msgs <- p.dec.predecode(m)
		}
	}()
	defer func() {
		it.Stop()
		for range msgs { // let the reader exit; these stay unacknowledged
		}
	}()

	// A batch in flight when the session ends is waited for and landed:
	// committed and acknowledged, or left unacknowledged, never half-applied.
	defer func() {
		if err := p.drain(context.WithoutCancel(ctx), nil); err != nil && ctx.Err() == nil {
			p.log.Warn("last batch not committed", "err", err)
		}
	}()
	sweep := time.NewTicker(p.o.SweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			return fmt.Errorf("read messages: %w", err)
		case <-p.commits.landed():
			if err := p.drain(ctx, nil); err != nil {
				return err
			}
		case <-sweep.C:
			if err := p.drain(ctx, nil); err != nil {
				return err
			}
			if err := p.sweep(ctx); err != nil {
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
			batch := make([]jetstream.Msg, 1, p.o.BatchMax)
			batch[0] = m
			batch = p.fill(batch, msgs)
			if err := p.process(ctx, batch); err != nil {
				return err
			}
		}
	}
}

// fill adds to batch what msgs holds, up to BatchMax, or up to CatchUpMax
// when the projector is at least BatchMax messages behind (read and not
// folded, or still in the stream). While the stream holds more for this consumer (the
// last message's NumPending), it waits up to fillWaitMax for it rather
// than committing a short batch: behind, batches are full and each
// commit's fixed cost is paid once per batch; caught up, nothing is
// pending and nothing waits.
func (p *Projector) fill(batch []jetstream.Msg, msgs <-chan jetstream.Msg) []jetstream.Msg {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	// Behind: what the reader holds decoded, plus what the stream held
	// past the first message when it was delivered.
	limit := p.o.BatchMax
	if meta, err := batch[0].Metadata(); err == nil && uint64(len(msgs))+meta.NumPending >= uint64(p.o.BatchMax) {
		limit = p.o.CatchUpMax
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

// consumer returns the durable consumer positioned right after the store's
// checkpoint. An existing consumer is reused only when it agrees with the
// checkpoint and has nothing unacknowledged; otherwise it is made again, so
// that nothing waits out an ack timeout after a restart.
func (p *Projector) consumer(ctx context.Context) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:     p.o.Name,
		Description: "stock ledger projector",
		AckPolicy:   jetstream.AckAllPolicy,
		AckWait:     ackWait,
		MaxDeliver:  -1,
		// Unacknowledged at most: a batch in flight, one folded, the
		// reader's channel and the client's pull buffer.
		MaxAckPending: 3*p.o.CatchUpMax + 2*p.o.BatchMax,
		FilterSubject: p.o.FilterSubject,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if p.commits.ckpt > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = p.commits.ckpt + 1
	}
	if c, err := p.js.Consumer(ctx, transport.EventStream, p.o.Name); err == nil {
		info := c.CachedInfo()
		if info.AckFloor.Stream == p.commits.ckpt && info.NumAckPending == 0 && info.Config.FilterSubject == p.o.FilterSubject {
			return c, nil
		}
		if err := p.js.DeleteConsumer(ctx, transport.EventStream, p.o.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("delete consumer %s to restart it at seq %d: %w", p.o.Name, p.commits.ckpt+1, err)
		}
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("look up consumer %s: %w", p.o.Name, err)
	}
	c, err := p.js.CreateConsumer(ctx, transport.EventStream, cfg)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s at seq %d: %w", p.o.Name, p.commits.ckpt+1, err)
	}
	return c, nil
}

// applyBatch folds, commits and acknowledges one batch and waits for it:
// process, then land. Tests drive the projector with it.
func (p *Projector) applyBatch(ctx context.Context, batch []jetstream.Msg) error {
	if err := p.process(ctx, batch); err != nil {
		return err
	}
	return p.drain(ctx, nil)
}

// process folds a batch on top of what is folded (committed or in flight),
// then waits for the batch in flight to land and starts this one's write.
// A batch that fails before its write began (the store unreachable for a
// load) is retried until it folds or ctx ends; after that, errors end the
// consumer session, which restarts at the checkpoint.
func (p *Projector) process(ctx context.Context, batch []jetstream.Msg) error {
	wait := retryWaitMin
	for {
		err := p.foldBatch(ctx, batch)
		if err == nil {
			return nil
		}
		var gap *gapError
		if errors.As(err, &gap) || errors.Is(err, errReset) {
			return err
		}
		p.health.set(err)
		p.log.Warn("batch not folded; retrying", "err", err, "checkpoint", p.commits.ckpt, "wait", wait)
		if !sleep(ctx, wait) {
			return nil
		}
		wait = min(2*wait, retryWaitMax)
	}
}

type gapError struct {
	want, got uint64
	consumer  bool // consumer (delivery) sequences, not stream sequences
}

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
func (p *Projector) checkDelivery(meta *jetstream.MsgMetadata) error {
	dseq := meta.Sequence.Consumer
	if dseq > p.delivered+1 {
		return &gapError{want: p.delivered + 1, got: dseq, consumer: true}
	}
	p.delivered = dseq
	return nil
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// foldBatch does the work of process once: it checks the batch's sequences,
// folds what is new, dead-letters what is refused, lands the write before
// and starts this batch's. A failure before the fold changed the states
// (a load, a gap) leaves them as they were.
func (p *Projector) foldBatch(ctx context.Context, batch []jetstream.Msg) error {
	fresh, lastSeq, err := p.admit(batch)
	if err != nil {
		return err
	}
	if len(fresh) == 0 {
		// Only redeliveries: acknowledge them again, once what is in
		// flight has landed (AckAll would acknowledge it too).
		if err := p.drain(ctx, nil); err != nil {
			return err
		}
		p.ack(batch)
		return nil
	}
	res, err := p.folder.fold(ctx, fresh)
	if err != nil {
		return err
	}
	p.folded = lastSeq
	if err := p.deads.send(ctx, res.deads); err != nil {
		return p.reset(ctx, err)
	}
	// One write in flight at a time: land the one before.
	if err := p.drain(ctx, res.changed); err != nil {
		return err
	}
	f := &flight{batch: batch, changed: res.changed, alerts: len(res.alerts), lastSeq: lastSeq,
		stats: &BatchStats{Messages: len(batch), Applied: res.applied}}
	if err := p.commits.launch(ctx, f, res.alerts); err != nil {
		return p.reset(ctx, err)
	}
	return nil
}

// admit checks the sequences of a batch and returns its messages past what
// is folded, decoded, with the last stream sequence among them.
func (p *Projector) admit(batch []jetstream.Msg) ([]delivery, uint64, error) {
	var (
		fresh   = make([]delivery, 0, len(batch))
		next    = p.folded + 1
		lastSeq = p.folded
	)
	strict := p.o.FilterSubject == transport.EventSubjectRoot+".>"
	for _, m := range batch {
		meta, err := m.Metadata()
		if err != nil {
			return nil, 0, fmt.Errorf("message metadata: %w", err)
		}
		if !strict {
			if err := p.checkDelivery(meta); err != nil {
				return nil, 0, err
			}
		}
		seq := meta.Sequence.Stream
		if seq < next {
			continue // applied before: a redelivery
		}
		if strict && seq != next {
			return nil, 0, &gapError{want: next, got: seq}
		}
		next, lastSeq = seq+1, seq
		e, reason := p.dec.decodeOnce(m, meta)
		fresh = append(fresh, delivery{msg: m, seq: seq, event: e, reason: reason})
	}
	return fresh, lastSeq, nil
}

// sweep raises ship_late for orders whose promise has passed since the last
// event of their SKU, and commits those changes at the current checkpoint.
func (p *Projector) sweep(ctx context.Context) error {
	changed, alerts, err := p.folder.sweep(ctx)
	if err != nil {
		p.health.set(fmt.Errorf("sweep: %w", err))
		return nil
	}
	if len(changed) == 0 {
		return nil
	}
	if err := p.commitSweep(ctx, changed, alerts); err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	p.log.Info("ship promises passed", "skus", len(changed), "alerts", len(alerts))
	return nil
}
