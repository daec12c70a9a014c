package consumers

import (
	"context"
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
	// retryWaitMin is the first wait before a failed batch, write or lease
	// bucket is tried again; it doubles with each failure up to
	// retryWaitMax.
	retryWaitMin = 100 * time.Millisecond
	// retryWaitMax bounds the wait between attempts of a failed batch.
	retryWaitMax = 5 * time.Second
)

// Options configure a Projector. Zero values take the defaults above.
type Options struct {
	// Name of the durable consumer and of the checkpoint in the store.
	Name string
	// FilterSubject of the consumer; "" means every event subject. With the
	// whole stream, the projector checks that stream sequences arrive
	// without a gap.
	FilterSubject string
	// BatchMax bounds a batch while the projector keeps up; 0 means
	// DefaultBatchMax.
	BatchMax int
	// CatchUpMax bounds a batch when the projector is at least BatchMax
	// messages behind; 0 means 10 × BatchMax, below BatchMax it is BatchMax.
	CatchUpMax int
	// CacheMax bounds the SKU states kept between batches; 0 means
	// DefaultCacheMax.
	CacheMax int
	// SweepEvery is how often the ship-promise sweep runs; 0 means
	// DefaultSweepEvery.
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
	// stock.events.<partition>.<shop>.<sku>, and the ship-promise sweep
	// touches only SKUs of shops in this partition (another partition's
	// projector owns the rest, and a stale cached copy written here would
	// undo its work).
	Partitions int
	Partition  int
}

// withDefaults returns o with its zero values replaced by the defaults.
func (o Options) withDefaults() Options {
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
	return o
}

// Store is what a projector needs of a read model, which projections.Store
// has: projections.Writer to load the states it folds and commit batches,
// projections.Outbox for the alert publisher, and one read, SKU (see
// projections.Reader), for ListingState. It must be safe for concurrent
// use: ListingState reads while the projector writes.
type Store interface {
	projections.Writer
	projections.Outbox
	SKU(ctx context.Context, shop, sku string) (projections.View, error)
}

// Projector folds the event stream into a store, exactly once: it commits
// each batch with its last stream sequence in one transaction, then
// acknowledges it. Run it once; its read methods (Applied, WaitApplied,
// ListingState, Err, DeadLettered, Held) are safe for concurrent use.
type Projector struct {
	// How a batch flows, on one goroutine (the fold loop): loop pulls it,
	// checks its sequences and decodes it; folder folds it into the cached
	// SKU states; deads dead-letters what was refused; commits lands the
	// write before (drain) and starts this one's, so that the next batch
	// folds while it commits; once it committed, land tells the listeners
	// and loop acknowledges it (pipeline.go).
	o         Options
	log       *slog.Logger
	reader    skuReader // ListingState's reads
	loop      *batchLoop
	folder    *folder
	deads     *deadLetters
	commits   *committer
	listeners []commitListener // told of every commit, in order (land)
	applied   *appliedSeq
	alerts    *outboxPublisher
	sync      *outboxPublisher
	syncSrc   *syncSource
	bucket    *viewBucket // nil without Options.ViewBucket
	health    *health
}

// NewProjector returns a projector of the STOCK_EVENTS stream into store;
// zero values of o take the defaults. Run starts it.
func NewProjector(nc *nats.Conn, js jetstream.JetStream, store Store, o Options) *Projector {
	o = o.withDefaults()
	log := o.Log.With("projector", o.Name)
	h := &health{}
	pr := &Projector{
		o: o, log: log, reader: store,
		folder:  newFolder(store, o),
		deads:   &deadLetters{js: js, hook: o.Hooks.DeadLettered, log: log},
		commits: &committer{store: store, name: o.Name, log: log, health: h},
		applied: newAppliedSeq(),
		alerts:  newOutboxPublisher(alertSource{js: js, outbox: store, partitioned: o.Partitions >= 2}, js, log),
		syncSrc: &syncSource{js: js, outbox: store, reader: store, own: ownership{partitions: o.Partitions, part: o.Partition}},
		health:  h,
	}
	pr.syncSrc.applied = pr.applied.load
	pr.sync = newOutboxPublisher(pr.syncSrc, js, log)
	pr.loop = newBatchLoop(js, o, pr, h, log)
	// The order in which a commit is told: metrics, waiters, then the
	// views and the alerts that dashboards watch.
	pr.listeners = []commitListener{o.Hooks, pr.applied, viewSubjects{nc: nc, log: log}}
	if o.ViewBucket != "" {
		pr.bucket = newViewBucket(js, o.ViewBucket, log)
		pr.listeners = append(pr.listeners, pr.bucket)
	}
	pr.listeners = append(pr.listeners, pr.alerts, pr.sync)
	return pr
}

// Run consumes until ctx ends, then finishes the batch in hand (committed
// and acknowledged, or left unacknowledged, never half-applied) and
// returns nil. It returns an error only when it cannot go on: the store's
// checkpoint cannot be read at start.
func (pr *Projector) Run(ctx context.Context) error {
	ckpt, err := pr.commits.store.Checkpoint(ctx, pr.o.Name)
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	pr.commits.ckpt = ckpt
	pr.applied.set(ckpt)
	pr.skipPublished(ctx, ckpt)
	if pr.bucket != nil {
		pr.bucket.start(ctx)
	}
	pr.log.Info("projector starting", "checkpoint", ckpt, "filter", pr.o.FilterSubject)

	// Stopped last: they publish what the last batches wrote.
	stopAlerts := pr.alerts.start(ctx)
	stopSync := pr.sync.start(ctx)
	defer stopAlerts()
	defer stopSync()
	pr.loop.run(ctx)
	return nil
}

// skipPublished sets what the outbox publishers pass over when the read
// model is rebuilt from sequence 1. Sync instructions: those at or below
// their SKU's last instruction on the stream (syncSource.rebuilding). Alert
// changes of a memory read model (rebuilt at every start): what precedes the
// last message on the alert stream, in outbox order, was published before,
// and what a kill cut off after a commit was not and is published now; of a
// persisted read model emptied under a consumer that had made progress (a
// Postgres schema rebuilt by a migration): its old outbox is gone with it,
// and what the consumer acknowledged was committed under the old model, so
// the rebuild publishes what comes after.
func (pr *Projector) skipPublished(ctx context.Context, ckpt uint64) {
	switch {
	case pr.o.SkipPublishedAlerts:
		pr.alerts.skipPublished(ctx)
		pr.rebuildingSync(ctx)
	case ckpt == 0:
		if acked := pr.loop.ackedBefore(ctx); acked > 0 {
			pr.alerts.skipBelow(acked + 1)
			pr.rebuildingSync(ctx)
			pr.log.Info("rebuilding from sequence 1: alert changes and sync instructions up to the old acknowledgement are not published again", "acked", acked)
		}
	}
}

// rebuildingSync makes the sync publisher pass over what the stream has
// and, once the rebuild has committed the last event the stream holds now,
// reconcile the targets bucket with the read model (syncSource.reconcile).
// When that event cannot be read, the bucket is left as the outbox makes it.
func (pr *Projector) rebuildingSync(ctx context.Context) {
	pr.syncSrc.rebuilding()
	last, err := transport.LastSeqFromLeader(ctx, pr.syncSrc.js.Conn(), transport.EventStream, pr.o.FilterSubject)
	if err != nil {
		pr.log.Warn("rebuild: last event not read; sync targets will not be reconciled", "err", err)
		return
	}
	pr.syncSrc.reconcileAt = last
}

// Held returns how many SKU states the projector holds in memory and how
// many orders they hold (open and early ones, and those closed since their
// batch was folded), as counted within the last second of work.
func (pr *Projector) Held() (skus, orders int64) { return pr.folder.held() }

// Applied returns the last stream sequence committed to the store.
func (pr *Projector) Applied() uint64 { return pr.applied.load() }

// DeadLettered returns how many messages this process sent to the dead-letter
// stream.
func (pr *Projector) DeadLettered() uint64 { return pr.deads.sent() }

// WaitApplied waits until the projector has committed stream sequence seq,
// or ctx ends (its error returned).
func (pr *Projector) WaitApplied(ctx context.Context, seq uint64) error {
	return pr.applied.wait(ctx, seq)
}

// ListingState implements transport.Catalog from the store, once the projector
// has applied minSeq.
func (pr *Projector) ListingState(ctx context.Context, shop, sku string, minSeq uint64) (ledger.ListingState, error) {
	if err := pr.WaitApplied(ctx, minSeq); err != nil {
		return ledger.ListingState{}, err
	}
	return listingState(ctx, pr.reader, shop, sku)
}

// Err returns the error of the last failure while the projector cannot go
// on (the store is down, say), nil when it is healthy.
func (pr *Projector) Err() error { return pr.health.get() }

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
