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
	// LeaseBucket is the KV bucket that holds partition leases and the
	// membership of projecting instances.
	LeaseBucket = "LEDGER_PARTITIONS"
	// DefaultLeaseTTL is how long a partition stays owned by an instance
	// that stopped renewing it: the failover time is about this long.
	DefaultLeaseTTL = 5 * time.Second
	// leaseRenewDivisor: leases are renewed every TTL/leaseRenewDivisor, so
	// that a renewal can be late twice before the lease lapses.
	leaseRenewDivisor = 3
	// leaseBucketTimeout bounds one attempt to create the lease bucket.
	leaseBucketTimeout = 5 * time.Second
	// leaseOpTimeout bounds one KV operation of the lease loop.
	leaseOpTimeout = 2 * time.Second
	// leaseKeysMax bounds the keys read from the lease bucket per round.
	leaseKeysMax = 4 * transport.PartitionsMax
	// progressEvery is how often the shared checkpoints are read for
	// WaitApplied and Applied.
	progressEvery = 100 * time.Millisecond
)

// PartitionOptions configure a Partitioned group member.
type PartitionOptions struct {
	// Partitions is the event stream's partition count, 2 to
	// transport.PartitionsMax.
	Partitions int
	// Instance names this member, unique among the instances sharing the
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

// Partitioned runs the projectors of the partitions this instance holds a
// lease on. Each partition is folded by at most one instance at a time: an
// instance starts a partition's projector only after creating its lease key
// in the KV bucket, renews it while it runs, and stops the projector as soon
// as a renewal fails. When an instance dies its leases lapse after LeaseTTL
// and the others take the partitions over. Should two projectors of one
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

	mu      sync.Mutex
	running map[int]*runningPartition
	lastErr error
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

type runningPartition struct {
	p      *Projector
	rev    uint64 // lease revision
	cancel context.CancelFunc
	done   chan struct{}
}

// NewPartitioned returns a group member; Run starts it.
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
		running: make(map[int]*runningPartition),
		ckpts:   make([]uint64, o.Partitions), lasts: make([]uint64, o.Partitions),
		advance: make(chan struct{}),
	}, nil
}

// PartitionName is the consumer and checkpoint name of partition p.
func PartitionName(prefix string, p int) string { return prefix + "-p" + strconv.Itoa(p) }

// Run holds leases and runs projectors until ctx ends, then stops them
// (each finishes its batch in hand) and gives its leases back, so that
// another instance takes over at once. It returns nil when ctx ends: a lease
// bucket that cannot be made yet (no meta leader, say) is retried, and Err
// reports it meanwhile.
func (g *Partitioned) Run(ctx context.Context) error {
	kv, err := g.leaseBucket(ctx)
	if err != nil {
		return nil // ctx ended
	}
	var wg sync.WaitGroup
	pctx, stopProgress := context.WithCancel(ctx)
	wg.Add(1)
	go func() { defer wg.Done(); g.trackProgress(pctx) }()
	defer func() {
		g.stopAll(kv)
		stopProgress()
		wg.Wait()
	}()

	tick := time.NewTicker(g.o.LeaseTTL / leaseRenewDivisor)
	defer tick.Stop()
	for {
		g.round(ctx, kv)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// leaseBucket creates or opens the lease bucket, retrying while the cluster
// cannot answer (a meta leader election, say) until ctx ends.
func (g *Partitioned) leaseBucket(ctx context.Context) (jetstream.KeyValue, error) {
	wait := 100 * time.Millisecond
	for {
		kctx, cancel := context.WithTimeout(ctx, leaseBucketTimeout)
		kv, err := g.js.CreateOrUpdateKeyValue(kctx, jetstream.KeyValueConfig{
			Bucket: LeaseBucket, Description: "stock ledger: partition leases",
			History: 1, TTL: g.o.LeaseTTL, Storage: jetstream.FileStorage, Replicas: max(1, g.o.Replicas),
		})
		cancel()
		if err == nil {
			g.setErr(nil)
			return kv, nil
		}
		g.setErr(fmt.Errorf("lease bucket %s: %w", LeaseBucket, err))
		g.log.Warn("lease bucket not ready; retrying", "bucket", LeaseBucket, "err", err, "wait", wait)
		if !sleep(ctx, wait) {
			return nil, ctx.Err()
		}
		wait = min(2*wait, retryWaitMax)
	}
}

// round renews membership and leases, then takes or gives back partitions
// toward the fair share.
func (g *Partitioned) round(ctx context.Context, kv jetstream.KeyValue) {
	op := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, leaseOpTimeout) }
	var roundErr error
	c, cancel := op()
	_, err := kv.Put(c, "member."+g.o.Instance, []byte(time.Now().UTC().Format(time.RFC3339)))
	cancel()
	if err != nil {
		roundErr = fmt.Errorf("renew membership: %w", err)
	}
	// Renew every lease; a failed renewal stops the partition at once: past
	// the TTL another instance may own it.
	for _, p := range g.owned() {
		rp := g.get(p)
		c, cancel := op()
		rev, err := kv.Update(c, leaseKey(p), []byte(g.o.Instance), rp.rev)
		cancel()
		if err != nil {
			g.log.Warn("partition lease lost; stopping its projector", "partition", p, "err", err)
			g.stop(p)
			continue
		}
		rp.rev = rev
	}
	if ctx.Err() != nil {
		return
	}
	members := g.members(ctx, kv)
	fair := (g.o.Partitions + members - 1) / members
	owned := g.owned()
	for len(owned) > fair {
		p := owned[len(owned)-1]
		owned = owned[:len(owned)-1]
		rev := g.get(p).rev
		g.stop(p)
		c, cancel := op()
		err := kv.Delete(c, leaseKey(p), jetstream.LastRevision(rev))
		cancel()
		g.log.Info("partition given back for balance", "partition", p, "members", members, "err", err)
	}
	start := int(hashInstance(g.o.Instance) % uint32(g.o.Partitions))
	for i := 0; i < g.o.Partitions && len(owned) < fair; i++ {
		p := (start + i) % g.o.Partitions
		if g.get(p) != nil {
			continue
		}
		c, cancel := op()
		rev, err := kv.Create(c, leaseKey(p), []byte(g.o.Instance))
		cancel()
		if err != nil {
			if !errors.Is(err, jetstream.ErrKeyExists) {
				roundErr = fmt.Errorf("take partition %d: %w", p, err)
			}
			continue
		}
		g.begin(ctx, p, rev)
		owned = append(owned, p)
	}
	g.setErr(roundErr)
}

func leaseKey(p int) string { return "owner." + strconv.Itoa(p) }

func hashInstance(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

// members counts live instances (their membership keys have not lapsed),
// at least 1 (this one).
func (g *Partitioned) members(ctx context.Context, kv jetstream.KeyValue) int {
	c, cancel := context.WithTimeout(ctx, leaseOpTimeout)
	defer cancel()
	kl, err := kv.ListKeysFiltered(c, "member.>")
	if err != nil {
		return 1
	}
	defer kl.Stop()
	// The lister may report a key twice: count distinct ones.
	seen := map[string]bool{"member." + g.o.Instance: true}
	for k := range kl.Keys() {
		if seen[k] = true; len(seen) >= leaseKeysMax {
			break
		}
	}
	return len(seen)
}

// begin starts a fresh projector for partition p: it reads the partition's
// checkpoint from the store and starts with an empty cache, so nothing a
// previous owner left behind is trusted.
func (g *Partitioned) begin(ctx context.Context, p int, rev uint64) {
	o := g.o.Projector
	o.Name = PartitionName(g.o.Projector.Name, p)
	o.FilterSubject = transport.PartitionFilter(p)
	o.Partitions, o.Partition = g.o.Partitions, p
	o.Log = g.log.With("partition", p)
	proj := NewProjector(g.nc, g.js, g.store, o)
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	rp := &runningPartition{p: proj, rev: rev, cancel: cancel, done: make(chan struct{})}
	g.mu.Lock()
	g.running[p] = rp
	g.mu.Unlock()
	g.log.Info("partition taken", "partition", p, "consumer", o.Name)
	go func() {
		defer close(rp.done)
		if err := proj.Run(pctx); err != nil {
			g.setErr(fmt.Errorf("partition %d: %w", p, err))
		}
	}()
}

// stop ends partition p's projector and waits until it has finished its
// batch in hand.
func (g *Partitioned) stop(p int) {
	rp := g.get(p)
	if rp == nil {
		return
	}
	rp.cancel()
	<-rp.done
	g.deadDone.Add(rp.p.DeadLettered())
	g.mu.Lock()
	delete(g.running, p)
	g.mu.Unlock()
}

func (g *Partitioned) stopAll(kv jetstream.KeyValue) {
	for _, p := range g.owned() {
		rev := g.get(p).rev
		g.stop(p)
		c, cancel := context.WithTimeout(context.Background(), leaseOpTimeout)
		if err := kv.Delete(c, leaseKey(p), jetstream.LastRevision(rev)); err != nil {
			g.log.Warn("partition lease not given back; it lapses by itself", "partition", p, "err", err)
		}
		cancel()
	}
	c, cancel := context.WithTimeout(context.Background(), leaseOpTimeout)
	_ = kv.Delete(c, "member."+g.o.Instance)
	cancel()
}

func (g *Partitioned) get(p int) *runningPartition {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running[p]
}

// Owned returns the partitions this instance runs a projector for, in order.
func (g *Partitioned) Owned() []int {
	return g.owned()
}

func (g *Partitioned) owned() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	ps := make([]int, 0, len(g.running))
	for p := range g.running {
		ps = append(ps, p)
	}
	sort.Ints(ps)
	return ps
}

func (g *Partitioned) setErr(err error) {
	g.mu.Lock()
	g.lastErr = err
	g.mu.Unlock()
}

// trackProgress reads every partition's checkpoint from the store and its
// last stream sequence from the stream, for WaitApplied and Applied.
func (g *Partitioned) trackProgress(ctx context.Context) {
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		g.readProgress(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (g *Partitioned) readProgress(ctx context.Context) {
	c, cancel := context.WithTimeout(ctx, leaseOpTimeout)
	defer cancel()
	st, err := g.js.Stream(c, transport.EventStream)
	if err != nil {
		return
	}
	// The stream's last sequence first: every partition's last sequence read
	// after it covers every event at or below it.
	streamLast := st.CachedInfo().State.LastSeq
	ckpts, lasts := make([]uint64, g.o.Partitions), make([]uint64, g.o.Partitions)
	for p := range g.o.Partitions {
		if ckpts[p], err = g.store.Checkpoint(c, PartitionName(g.o.Projector.Name, p)); err != nil {
			return
		}
		if lasts[p], err = transport.LastSeqFromLeader(c, g.nc, transport.EventStream, transport.PartitionFilter(p)); err != nil {
			return
		}
	}
	// Applied: everything at or below it is applied in every partition. A
	// partition that is behind holds it at its checkpoint; when all are
	// caught up it is the last sequence of any partition.
	var applied uint64
	behind := false
	for p := range ckpts {
		if ckpts[p] < lasts[p] {
			if !behind || ckpts[p] < applied {
				applied = ckpts[p]
			}
			behind = true
		} else if !behind {
			applied = max(applied, lasts[p])
		}
	}
	g.mu.Lock()
	g.ckpts, g.lasts, g.applied, g.streamLast = ckpts, lasts, applied, streamLast
	close(g.advance)
	g.advance = make(chan struct{})
	g.mu.Unlock()
}

// Applied returns a stream sequence at or below which every event is applied
// in the shared store, as of the last progress read.
func (g *Partitioned) Applied() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.applied
}

// WaitApplied waits until every event at or below seq is applied in the
// shared store, whichever instance applies it, or ctx ends (its error
// returned). A partition's events are applied in stream order, so it is
// there once its checkpoint reaches seq or its last event.
func (g *Partitioned) WaitApplied(ctx context.Context, seq uint64) error {
	return g.wait(ctx, seq, func(p int) bool { return true })
}

func (g *Partitioned) wait(ctx context.Context, seq uint64, in func(p int) bool) error {
	for {
		g.mu.Lock()
		ch, done := g.advance, true
		for p := range g.ckpts {
			if in(p) && g.ckpts[p] < min(seq, g.lasts[p]) {
				done = false
			}
		}
		if seq == 0 {
			done = true
		}
		done = done && seq <= g.streamLast
		g.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for seq %d (applied %d): %w", seq, g.Applied(), ctx.Err())
		}
	}
}

// ListingState implements transport.Catalog from the shared store, once the
// shop's partition has applied minSeq (the SKU's last stream sequence).
func (g *Partitioned) ListingState(ctx context.Context, shop, sku string, minSeq uint64) (ledger.ListingState, error) {
	part := transport.Partition(shop, g.o.Partitions)
	if err := g.wait(ctx, minSeq, func(p int) bool { return p == part }); err != nil {
		return ledger.ListingState{}, err
	}
	return listingState(ctx, g.store, shop, sku)
}

// Err returns why this member is not healthy: a lease or membership error, or
// the failure of one of its partitions' projectors; nil when healthy.
func (g *Partitioned) Err() error {
	g.mu.Lock()
	err := g.lastErr
	running := make([]*runningPartition, 0, len(g.running))
	for _, rp := range g.running {
		running = append(running, rp)
	}
	g.mu.Unlock()
	if err != nil {
		return err
	}
	for _, rp := range running {
		if err := rp.p.Err(); err != nil {
			return err
		}
	}
	return nil
}

// DeadLettered returns how many messages this process's partition projectors
// sent to the dead-letter stream.
func (g *Partitioned) DeadLettered() uint64 {
	n := g.deadDone.Load()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, rp := range g.running {
		n += rp.p.DeadLettered()
	}
	return n
}

// Held sums Projector.Held over the partitions this instance runs.
func (g *Partitioned) Held() (skus, orders int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, rp := range g.running {
		s, o := rp.p.Held()
		skus, orders = skus+s, orders+o
	}
	return skus, orders
}
