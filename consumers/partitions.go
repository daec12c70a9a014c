package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger"
	"stockledger/ledger/transport"
)

// Partitioned projection bounds and defaults.
const (
	// LeaseBucket is the KV bucket that holds partition leases and a key
	// per live instance of the partitioned projection.
	LeaseBucket = "LEDGER_PARTITIONS"
	// DefaultLeaseTTL is how long a partition stays owned by an instance
	// that stopped renewing it: the failover time is about this long.
	DefaultLeaseTTL = 5 * time.Second
	// leaseRenewDivisor: leases are renewed every TTL/leaseRenewDivisor (1 s
	// by default). Often, so that when the lease bucket stops answering
	// (its leader's server died: the election takes 4 to 9 s) the last
	// renewal is recent and most of the TTL is left to retry in; and so that
	// a lapsed lease is taken over within a second.
	leaseRenewDivisor = 5
	// leaseBucketTimeout bounds one attempt to create the lease bucket.
	leaseBucketTimeout = 5 * time.Second
	// leaseOpTimeout bounds one KV operation of the lease loop other than
	// a renewal (see leaseAttemptMax), and one progress read.
	leaseOpTimeout = 2 * time.Second
	// leaseKeysMax bounds the keys read from the lease bucket per round.
	leaseKeysMax = 4 * transport.PartitionsMax
	// progressEvery is how often the shared checkpoints are read for
	// WaitApplied and Applied.
	progressEvery = 100 * time.Millisecond
)

// PartitionOptions configure a Partitioned.
type PartitionOptions struct {
	// Partitions is the event stream's partition count, 2 to
	// transport.PartitionsMax.
	Partitions int
	// Instance names this instance, unique among the instances sharing the
	// store (a host name, say).
	Instance string
	// LeaseTTL: zero means DefaultLeaseTTL.
	LeaseTTL time.Duration
	// Replicas of the lease bucket: 3 in a cluster.
	Replicas int
	// Projector is the template of each partition's projector; Name is the
	// prefix of the per-partition names (DefaultName when empty).
	Projector Options
}

// Partitioned is this instance's part of a partitioned projection: several
// instances fold the partitions of one partitioned event stream into one
// shared store, each partition by its own Projector. Partitioned runs the
// projectors of the partitions this instance holds a lease on. Each partition is folded by at most one instance at a time: an
// instance starts a partition's projector only after creating its lease key
// in the KV bucket, renews it while it runs, and stops the projector once
// another instance could take the partition: the bucket says the key was
// written by someone else, or renewals failed until LeaseTTL after the last
// one the bucket took (less a margin to stop). A renewal that meets a
// leader election of the bucket is tried again meanwhile (leases.go). When
// an instance dies its leases lapse after LeaseTTL and the others take the
// partitions over. Should two projectors of one
// partition ever overlap (a paused process that resumes), the store's
// checkpoint guard (Batch.PrevSeq) refuses the stale one's commit.
//
// Instances share the partitions evenly: each takes up to ceil(partitions /
// live instances) and gives back what it holds beyond that.
//
// Its read methods implement what the HTTP API needs from a projector, from
// the shared store's checkpoints, so any instance answers for every shop.
// They are safe for concurrent use.
type Partitioned struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	store Store
	o     PartitionOptions
	log   *slog.Logger

	mu       sync.Mutex
	running  map[int]*runningPartition
	stopping map[int]*runningPartition // released, finishing their batch
	lastErr  error
	// owners: each partition's lease as the owner watch last saw it.
	owners []ownerSeen
	// lost: partitions whose lease lapsed while the bucket did not answer;
	// the next round takes them first. bucketDown: the last round could not
	// write this instance's key. Only the lease loop uses them.
	lost       map[int]bool
	bucketDown bool
	// progressAt: when the progress figures were last read.
	progressAt time.Time
	// progress: checkpoint and last stream sequence of every partition.
	ckpts   []uint64
	lasts   []uint64
	applied uint64
	// streamLast is the stream's last sequence when the progress read
	// began: the partitions' figures are complete up to it.
	streamLast uint64
	advance    chan struct{}
	deadDone   atomic.Uint64 // dead letters of projectors that stopped
}

// runningPartition is a partition this instance holds the lease of, with
// its projector.
type runningPartition struct {
	pr  *Projector
	rev uint64 // lease revision
	// renewed is when the last write of the lease that the bucket took was
	// sent: the bucket's copy lapses no sooner than LeaseTTL after it.
	// Only the lease loop reads and writes rev and renewed.
	renewed time.Time
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewPartitioned returns this instance's part of the partitioned
// projection; Run starts it. It returns an error naming the option when
// Partitions is not from 2 to transport.PartitionsMax or Instance is empty.
func NewPartitioned(nc *nats.Conn, js jetstream.JetStream, store Store, o PartitionOptions) (*Partitioned, error) {
	if o.Partitions < 2 || o.Partitions > transport.PartitionsMax {
		return nil, fmt.Errorf("partitions %d: must be from 2 to %d", o.Partitions, transport.PartitionsMax)
	}
	if o.Instance == "" {
		return nil, errors.New("instance: must not be empty")
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.Projector.Name == "" {
		o.Projector.Name = DefaultName
	}
	if o.Projector.Log == nil {
		o.Projector.Log = slog.Default()
	}
	return &Partitioned{
		nc: nc, js: js, store: store, o: o, log: o.Projector.Log.With("instance", o.Instance),
		running: make(map[int]*runningPartition), stopping: make(map[int]*runningPartition), owners: make([]ownerSeen, o.Partitions), lost: map[int]bool{},
		ckpts: make([]uint64, o.Partitions), lasts: make([]uint64, o.Partitions),
		advance: make(chan struct{}),
	}, nil
}

// PartitionName is the consumer and checkpoint name of partition part.
func PartitionName(prefix string, part int) string { return prefix + "-p" + strconv.Itoa(part) }

// Run holds leases and runs projectors until ctx ends, then stops them
// (each finishes its batch in hand) and gives its leases back, so that
// another instance takes over at once. It returns nil when ctx ends: a lease
// bucket that cannot be made yet (no meta leader, say) is retried, and Err
// reports it meanwhile.
func (pp *Partitioned) Run(ctx context.Context) error {
	kv, err := pp.leaseBucket(ctx)
	if err != nil {
		return nil // ctx ended
	}
	var wg sync.WaitGroup
	pctx, stopProgress := context.WithCancel(ctx)
	wg.Add(2)
	go func() { defer wg.Done(); pp.trackProgress(pctx) }()
	go func() { defer wg.Done(); pp.watchOwners(pctx, kv) }()
	defer func() {
		pp.stopAll(kv)
		stopProgress()
		wg.Wait()
	}()

	tick := time.NewTicker(pp.o.LeaseTTL / leaseRenewDivisor)
	defer tick.Stop()
	for {
		pp.round(ctx, kv)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// leaseBucket creates or opens the lease bucket, retrying while the cluster
// cannot answer (a meta leader election, say) until ctx ends.
func (pp *Partitioned) leaseBucket(ctx context.Context) (jetstream.KeyValue, error) {
	wait := retryWaitMin
	for {
		kctx, cancel := context.WithTimeout(ctx, leaseBucketTimeout)
		kv, err := pp.js.CreateOrUpdateKeyValue(kctx, jetstream.KeyValueConfig{
			Bucket: LeaseBucket, Description: "stock ledger: partition leases",
			History: 1, TTL: pp.o.LeaseTTL, Storage: jetstream.FileStorage, Replicas: max(1, pp.o.Replicas),
		})
		cancel()
		if err == nil {
			pp.setErr(nil)
			return kv, nil
		}
		pp.setErr(fmt.Errorf("lease bucket %s: %w", LeaseBucket, err))
		pp.log.Warn("lease bucket not ready; retrying", "bucket", LeaseBucket, "err", err, "wait", wait)
		if !sleep(ctx, wait) {
			return nil, ctx.Err()
		}
		wait = min(2*wait, retryWaitMax)
	}
}

// leaseKey is the lease bucket key of partition part.
func leaseKey(part int) string { return "owner." + strconv.Itoa(part) }

// hashInstance is FNV-1a of s: where an instance starts looking for
// partitions to take, so that instances do not all try the same first.
func hashInstance(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

// liveInstances counts live instances (their instance keys have not
// lapsed), at least 1 (this one).
func (pp *Partitioned) liveInstances(ctx context.Context, kv jetstream.KeyValue) int {
	c, cancel := context.WithTimeout(ctx, leaseOpTimeout)
	defer cancel()
	kl, err := kv.ListKeysFiltered(c, "member.>")
	if err != nil {
		return 1
	}
	defer kl.Stop()
	// The lister may report a key twice: count distinct ones.
	seen := map[string]bool{"member." + pp.o.Instance: true}
	for k := range kl.Keys() {
		if seen[k] = true; len(seen) >= leaseKeysMax {
			break
		}
	}
	return len(seen)
}

// begin starts a fresh projector for partition part: it reads the partition's
// checkpoint from the store and starts with an empty cache, so nothing a
// previous owner left behind is trusted.
func (pp *Partitioned) begin(ctx context.Context, part int, rev uint64, sent time.Time) {
	o := pp.o.Projector
	o.Name = PartitionName(pp.o.Projector.Name, part)
	o.FilterSubject = transport.PartitionFilter(part)
	o.Partitions, o.Partition = pp.o.Partitions, part
	o.Log = pp.log.With("partition", part)
	pr := NewProjector(pp.nc, pp.js, pp.store, o)
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	rp := &runningPartition{pr: pr, rev: rev, renewed: sent, cancel: cancel, done: make(chan struct{})}
	pp.mu.Lock()
	pp.running[part] = rp
	pp.mu.Unlock()
	pp.log.Info("partition taken", "partition", part, "consumer", o.Name)
	go func() {
		defer close(rp.done)
		if err := pr.Run(pctx); err != nil {
			pp.setErr(fmt.Errorf("partition %d: %w", part, err))
		}
	}()
}

// stop ends partition part's projector and waits until it has finished its
// batch in hand.
func (pp *Partitioned) stop(part int) {
	if done := pp.release(part); done != nil {
		<-done
	}
}

// release tells partition part's projector to stop and returns at once,
// with a channel closed once it has finished its batch in hand (nil when
// part does not run here). The lease loop releases without waiting: a
// projector that takes long to stop (its store or NATS does not answer)
// must not hold up the renewal of the other leases. Until it has stopped,
// part is not taken again here (stopping).
func (pp *Partitioned) release(part int) <-chan struct{} {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	rp := pp.running[part]
	if rp == nil {
		return nil
	}
	rp.cancel()
	delete(pp.running, part)
	pp.stopping[part] = rp
	go func() {
		<-rp.done
		pp.deadDone.Add(rp.pr.DeadLettered())
		pp.mu.Lock()
		if pp.stopping[part] == rp {
			delete(pp.stopping, part)
		}
		pp.mu.Unlock()
	}()
	return rp.done
}

// isStopping reports whether part's last projector here is still stopping.
func (pp *Partitioned) isStopping(part int) bool {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return pp.stopping[part] != nil
}

// stopAll stops every partition this instance runs, gives its leases back
// and removes its instance key, so that the others take over at once.
func (pp *Partitioned) stopAll(kv jetstream.KeyValue) {
	for _, part := range pp.owned() {
		rev := pp.get(part).rev
		pp.stop(part)
		c, cancel := context.WithTimeout(context.Background(), leaseOpTimeout)
		if err := kv.Delete(c, leaseKey(part), jetstream.LastRevision(rev)); err != nil {
			pp.log.Warn("partition lease not given back; it lapses by itself", "partition", part, "err", err)
		}
		cancel()
	}
	c, cancel := context.WithTimeout(context.Background(), leaseOpTimeout)
	_ = kv.Delete(c, "member."+pp.o.Instance)
	cancel()
	// Projectors released before (a lapsed lease) finish their batch too.
	pp.mu.Lock()
	stopping := make([]*runningPartition, 0, len(pp.stopping))
	for _, rp := range pp.stopping {
		stopping = append(stopping, rp)
	}
	pp.mu.Unlock()
	for _, rp := range stopping {
		<-rp.done
	}
}

// get returns partition part while this instance runs it, else nil.
func (pp *Partitioned) get(part int) *runningPartition {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return pp.running[part]
}

// Owned returns the partitions this instance runs a projector for, in order.
func (pp *Partitioned) Owned() []int {
	return pp.owned()
}

// owned returns the partitions this instance runs, in order.
func (pp *Partitioned) owned() []int {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	parts := make([]int, 0, len(pp.running))
	for part := range pp.running {
		parts = append(parts, part)
	}
	sort.Ints(parts)
	return parts
}

// setErr records the last lease round's error; nil clears it.
func (pp *Partitioned) setErr(err error) {
	pp.mu.Lock()
	pp.lastErr = err
	pp.mu.Unlock()
}

// trackProgress reads every partition's checkpoint from the store and its
// last stream sequence from the stream, for WaitApplied and Applied.
func (pp *Partitioned) trackProgress(ctx context.Context) {
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		pp.readProgress(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// readProgress reads every partition's checkpoint and last stream sequence
// once, works out Applied and wakes the waiters.
func (pp *Partitioned) readProgress(ctx context.Context) {
	c, cancel := context.WithTimeout(ctx, leaseOpTimeout)
	defer cancel()
	st, err := pp.js.Stream(c, transport.EventStream)
	if err != nil {
		return
	}
	// The stream's last sequence first: every partition's last sequence read
	// after it covers every event at or below it.
	streamLast := st.CachedInfo().State.LastSeq
	ckpts, lasts := make([]uint64, pp.o.Partitions), make([]uint64, pp.o.Partitions)
	for part := range pp.o.Partitions {
		if ckpts[part], err = pp.store.Checkpoint(c, PartitionName(pp.o.Projector.Name, part)); err != nil {
			return
		}
		if lasts[part], err = transport.LastSeqFromLeader(c, pp.nc, transport.EventStream, transport.PartitionFilter(part)); err != nil {
			return
		}
	}
	// Applied: everything at or below it is applied in every partition. A
	// partition that is behind holds it at its checkpoint; when all are
	// caught up it is the last sequence of any partition.
	var applied uint64
	behind := false
	for part := range ckpts {
		if ckpts[part] < lasts[part] {
			if !behind || ckpts[part] < applied {
				applied = ckpts[part]
			}
			behind = true
		} else if !behind {
			applied = max(applied, lasts[part])
		}
	}
	pp.mu.Lock()
	pp.ckpts, pp.lasts, pp.applied, pp.streamLast = ckpts, lasts, applied, streamLast
	pp.progressAt = time.Now()
	close(pp.advance)
	pp.advance = make(chan struct{})
	pp.mu.Unlock()
}

// Applied returns a stream sequence at or below which every event is applied
// in the shared store, as of the last progress read.
func (pp *Partitioned) Applied() uint64 {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return pp.applied
}

// WaitApplied waits until every event at or below seq is applied in the
// shared store, whichever instance applies it, or ctx ends (its error
// returned). A partition's events are applied in stream order, so it is
// there once its checkpoint reaches seq or its last event.
func (pp *Partitioned) WaitApplied(ctx context.Context, seq uint64) error {
	return pp.wait(ctx, seq, func(int) bool { return true })
}

// wait returns once every partition for which in is true has applied seq,
// or its last event when seq lies past it, as of a progress read that
// covers seq; or ctx's error when it ends first.
func (pp *Partitioned) wait(ctx context.Context, seq uint64, in func(part int) bool) error {
	for {
		pp.mu.Lock()
		ch, done := pp.advance, true
		for part := range pp.ckpts {
			if in(part) && pp.ckpts[part] < min(seq, pp.lasts[part]) {
				done = false
			}
		}
		if seq == 0 {
			done = true
		}
		done = done && seq <= pp.streamLast
		pp.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for seq %d (applied %d): %w", seq, pp.Applied(), ctx.Err())
		}
	}
}

// ListingState implements transport.Catalog from the shared store, once the
// shop's partition has applied minSeq (the SKU's last stream sequence).
func (pp *Partitioned) ListingState(ctx context.Context, shop, sku string, minSeq uint64) (ledger.ListingState, error) {
	shopPart := transport.Partition(shop, pp.o.Partitions)
	if err := pp.wait(ctx, minSeq, func(part int) bool { return part == shopPart }); err != nil {
		return ledger.ListingState{}, err
	}
	return listingState(ctx, pp.store, shop, sku)
}

// Err returns why this instance's part is not healthy: an error of the lease
// bucket, of its leases or of its instance key, or the failure of one of its
// partitions' projectors; nil when healthy.
func (pp *Partitioned) Err() error {
	pp.mu.Lock()
	err := pp.lastErr
	running := make([]*runningPartition, 0, len(pp.running))
	for _, rp := range pp.running {
		running = append(running, rp)
	}
	pp.mu.Unlock()
	if err != nil {
		return err
	}
	for _, rp := range running {
		if err := rp.pr.Err(); err != nil {
			return err
		}
	}
	return nil
}

// DeadLettered returns how many messages this process's partition projectors
// sent to the dead-letter stream.
func (pp *Partitioned) DeadLettered() uint64 {
	n := pp.deadDone.Load()
	pp.mu.Lock()
	defer pp.mu.Unlock()
	for _, rp := range pp.running {
		n += rp.pr.DeadLettered()
	}
	return n
}

// Held sums Projector.Held over the partitions this instance runs.
func (pp *Partitioned) Held() (skus, orders int64) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	for _, rp := range pp.running {
		s, o := rp.pr.Held()
		skus, orders = skus+s, orders+o
	}
	return skus, orders
}
