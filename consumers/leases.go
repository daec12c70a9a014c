package consumers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Lease loop bounds. A NATS leader election of the lease bucket (its
// leader's server died) leaves the bucket without an answer for a few
// seconds; a renewal that meets one is tried again until the lease could
// have lapsed, each attempt bounded, so that an answer that comes late in
// the TTL is still seen.
const (
	// leaseAttemptMax bounds one attempt to renew a lease or to write this
	// instance's key (it is also bounded by the time left of the TTL).
	leaseAttemptMax = time.Second
	// leaseAttemptMin is the shortest attempt: under it, an attempt could
	// not get an answer even from a bucket that works.
	leaseAttemptMin = 100 * time.Millisecond
	// leaseRetryMin is the first wait before a failed renewal is tried
	// again; it doubles up to leaseRetryMax.
	leaseRetryMin = 50 * time.Millisecond
	leaseRetryMax = 400 * time.Millisecond
	// leaseStopDivisor: a lease that could not be renewed is given up
	// LeaseTTL/leaseStopDivisor before the bucket's copy can lapse, the
	// time to stop its projector before another instance may start one.
	leaseStopDivisor = 10
	// ownerWatchRetry is the wait before a failed owner watch starts again.
	ownerWatchRetry = 500 * time.Millisecond
)

// ownerSeen is a partition's lease as the owner watch last saw it.
type ownerSeen struct {
	instance string    // "" when deleted or never seen
	written  time.Time // the bucket's time of the write
}

// round writes this instance's key, renews its leases, then takes or gives
// back partitions toward the fair share. When the bucket does not answer
// (an election, say) it renews only: taking and giving back wait for a
// round in which the bucket answers, so that no renewal waits on them.
func (pp *Partitioned) round(ctx context.Context, kv jetstream.KeyValue) {
	c, cancel := context.WithTimeout(ctx, leaseAttemptMax)
	_, err := kv.Put(c, "member."+pp.o.Instance, []byte(time.Now().UTC().Format(time.RFC3339)))
	cancel()
	pp.renewLeases(ctx, kv)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		pp.bucketDown = true
		pp.setErr(fmt.Errorf("renew membership: %w", err))
		return
	}
	recovering := pp.bucketDown
	pp.bucketDown = false
	pp.setErr(pp.balance(ctx, kv, recovering))
	pp.readOwners(ctx, kv)
}

// readOwners reads the lease of every partition this instance does not
// run, within leaseAttemptMax in all, into the owners the watch keeps: the
// watch, an ordered consumer, can take seconds to resume after the bucket
// elected a leader, and health would meanwhile name owners that lapsed
// long ago, or miss new ones.
func (pp *Partitioned) readOwners(ctx context.Context, kv jetstream.KeyValue) {
	c, cancel := context.WithTimeout(ctx, leaseAttemptMax)
	defer cancel()
	for part := range pp.o.Partitions {
		if pp.get(part) != nil {
			continue
		}
		e, err := kv.Get(c, leaseKey(part))
		if err == nil {
			pp.sawOwner(e)
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return // the bucket stopped answering: the next round
		}
	}
}

// renewLeases renews every lease this instance holds. A renewal that fails
// is tried again, with backoff, while the lease is surely still this
// instance's: until LeaseTTL after the last write the bucket took (less the
// time to stop a projector), or until the bucket says the key was written
// by someone else. Only then is the partition given up: before, no other
// instance could have taken it.
//
// The leases are renewed at once, one goroutine each, so that one that
// waits out its attempt does not delay another's past its TTL.
func (pp *Partitioned) renewLeases(ctx context.Context, kv jetstream.KeyValue) {
	pending := pp.owned()
	wait := leaseRetryMin
	for len(pending) > 0 && ctx.Err() == nil {
		settled := make([]bool, len(pending))
		var wg sync.WaitGroup
		for i, part := range pending {
			wg.Go(func() { settled[i] = pp.renew(ctx, kv, part) })
		}
		wg.Wait()
		next := pending[:0]
		for i, part := range pending {
			if !settled[i] {
				next = append(next, part)
			}
		}
		pending = next
		if len(pending) == 0 || !sleep(ctx, wait) {
			return
		}
		wait = min(2*wait, leaseRetryMax)
	}
}

// renew tries once to renew partition part's lease. It reports whether the
// partition is settled: renewed, or given up (its projector stopped).
func (pp *Partitioned) renew(ctx context.Context, kv jetstream.KeyValue, part int) bool {
	rp := pp.get(part)
	if rp == nil {
		return true
	}
	giveUp := rp.renewed.Add(pp.o.LeaseTTL - pp.o.LeaseTTL/leaseStopDivisor)
	sent := time.Now()
	c, cancel := context.WithTimeout(ctx, max(leaseAttemptMin, min(leaseAttemptMax, time.Until(giveUp))))
	rev, err := kv.Update(c, leaseKey(part), []byte(pp.o.Instance), rp.rev)
	cancel()
	switch {
	case err == nil:
		rp.rev, rp.renewed = rev, sent
		return true
	case ctx.Err() != nil:
		return true // shutting down: stopAll gives the lease back
	case errors.Is(err, jetstream.ErrKeyExists):
		if pp.ownWrite(ctx, kv, part, rp) {
			return false // an attempt that timed out was stored: renew from it
		}
		pp.log.Warn("partition lease written by another instance or lapsed; stopping its projector", "partition", part, "err", err)
	case !time.Now().Before(giveUp):
		pp.log.Warn("partition lease not renewed within its TTL; stopping its projector", "partition", part,
			"last_renewed", rp.renewed.UTC().Format(time.RFC3339Nano), "err", err)
		pp.mu.Lock()
		pp.lost[part] = true
		pp.mu.Unlock()
	default:
		pp.log.Info("partition lease renewal failed; retrying within the TTL", "partition", part, "err", err)
		return false
	}
	pp.release(part)
	return true
}

// ownWrite reports whether the lease of part, which a renewal found
// revised, holds this instance's name in a revision after rp.rev: an
// earlier attempt whose answer was lost (a leader election) was stored.
// Then rp.rev becomes that revision; rp.renewed stays, as that write may
// have been sent before.
func (pp *Partitioned) ownWrite(ctx context.Context, kv jetstream.KeyValue, part int, rp *runningPartition) bool {
	c, cancel := context.WithTimeout(ctx, leaseAttemptMax)
	defer cancel()
	e, err := kv.Get(c, leaseKey(part))
	if err != nil || string(e.Value()) != pp.o.Instance || e.Revision() <= rp.rev {
		return false
	}
	rp.rev = e.Revision()
	return true
}

// balance gives back what this instance holds beyond its fair share and
// takes free partitions up to it, those it lost to a lapse first. After the
// bucket did not answer (recovering), it takes back only what it lost: the
// other instances' keys may have lapsed meanwhile, and counting only itself
// it would take everything.
func (pp *Partitioned) balance(ctx context.Context, kv jetstream.KeyValue, recovering bool) error {
	live := pp.liveInstances(ctx, kv)
	fair := (pp.o.Partitions + live - 1) / live
	owned := pp.owned()
	for len(owned) > fair && !recovering {
		part := owned[len(owned)-1]
		owned = owned[:len(owned)-1]
		rev := pp.get(part).rev
		// Deleted once its projector has stopped: the lease guards the
		// batch in hand. The wait is bounded by a renewal period, so that
		// the other leases are renewed on time; past it the lease is left
		// to lapse by itself.
		done := pp.release(part)
		select {
		case <-done:
		case <-time.After(pp.o.LeaseTTL / leaseRenewDivisor):
			pp.log.Info("partition given back: its projector is still stopping; the lease lapses by itself", "partition", part)
			continue
		}
		c, cancel := context.WithTimeout(ctx, leaseOpTimeout)
		err := kv.Delete(c, leaseKey(part), jetstream.LastRevision(rev))
		cancel()
		pp.log.Info("partition given back for balance", "partition", part, "members", live, "err", err)
	}
	start := int(hashInstance(pp.o.Instance) % uint32(pp.o.Partitions))
	order := make([]int, 0, pp.o.Partitions)
	for i := range pp.o.Partitions {
		order = append(order, (start+i)%pp.o.Partitions)
	}
	// Stable: lost partitions first, each group in hash order.
	slices.SortStableFunc(order, func(a, b int) int { return boolRank(pp.lost[b]) - boolRank(pp.lost[a]) })
	var err error
	for _, part := range order {
		if len(owned) >= fair || (recovering && !pp.lost[part]) {
			break
		}
		if pp.get(part) != nil || pp.isStopping(part) {
			continue
		}
		sent := time.Now()
		c, cancel := context.WithTimeout(ctx, leaseOpTimeout)
		rev, cerr := kv.Create(c, leaseKey(part), []byte(pp.o.Instance))
		cancel()
		if errors.Is(cerr, jetstream.ErrKeyExists) {
			rev, cerr = pp.adopt(ctx, kv, part)
		}
		if cerr != nil {
			err = fmt.Errorf("take partition %d: %w", part, cerr)
			break // the bucket does not answer: try next round
		}
		if rev == 0 {
			continue // another instance holds it
		}
		pp.begin(ctx, part, rev, sent)
		owned = append(owned, part)
	}
	clear(pp.lost)
	return err
}

// adopt renews a lease key that already names this instance although it
// runs no projector of the partition: a Create whose answer was lost after
// the bucket stored it, or a lease left by this instance's previous
// process. Without it the partition would wait out the TTL unprojected. It
// returns the renewed revision, or 0 and no error when another instance
// holds the key (or it changed meanwhile).
func (pp *Partitioned) adopt(ctx context.Context, kv jetstream.KeyValue, part int) (uint64, error) {
	c, cancel := context.WithTimeout(ctx, leaseOpTimeout)
	defer cancel()
	e, err := kv.Get(c, leaseKey(part))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if string(e.Value()) != pp.o.Instance {
		return 0, nil
	}
	rev, err := kv.Update(c, leaseKey(part), []byte(pp.o.Instance), e.Revision())
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, nil // written by another since the Get
	}
	if err == nil {
		pp.log.Info("partition lease found in this instance's name; renewed and taken", "partition", part)
	}
	return rev, err
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// watchOwners keeps pp.owners up to date from a watch of the lease keys,
// until ctx ends; a watch that fails is started again.
func (pp *Partitioned) watchOwners(ctx context.Context, kv jetstream.KeyValue) {
	for ctx.Err() == nil {
		w, err := kv.WatchFiltered(ctx, []string{"owner.>"})
		if err == nil {
			for e := range w.Updates() {
				if e != nil {
					pp.sawOwner(e)
				}
			}
			_ = w.Stop()
		}
		if !sleep(ctx, ownerWatchRetry) {
			return
		}
	}
}

// sawOwner records a lease key's write or deletion.
func (pp *Partitioned) sawOwner(e jetstream.KeyValueEntry) {
	part, err := strconv.Atoi(strings.TrimPrefix(e.Key(), "owner."))
	if err != nil || part < 0 || part >= pp.o.Partitions {
		return
	}
	seen := ownerSeen{written: e.Created()}
	if e.Operation() == jetstream.KeyValuePut {
		seen.instance = string(e.Value())
	}
	pp.mu.Lock()
	if !seen.written.Before(pp.owners[part].written) {
		pp.owners[part] = seen
	}
	pp.mu.Unlock()
}

// PartitionState is one partition as this instance sees it: who holds its
// lease and how far its projection is. See Partitioned.States.
type PartitionState struct {
	Partition int
	// Owner is the instance holding the lease; "" when no lease is live
	// (none written, given back, or its last write older than LeaseTTL).
	Owner string
	// Mine: this instance runs the partition's projector.
	Mine bool
	// ProjectorErr, for a partition of this instance, is why its
	// projector cannot go on (it is restarting its consumer, say); nil
	// while it works, and for the partitions of other instances.
	ProjectorErr error
	// Checkpoint is the last stream sequence committed for the partition;
	// LastSeq the partition's last event in the stream; Lag the events
	// between them; all as of ProgressAt.
	Checkpoint, LastSeq, Lag uint64
}

// States returns every partition's state from what this instance holds in
// memory (the owner watch, its own projectors, the last progress read), and
// when the progress was read (zero before the first read). It makes no
// request: health answers from it while NATS elects a leader. Safe for
// concurrent use.
func (pp *Partitioned) States(now time.Time) ([]PartitionState, time.Time) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	out := make([]PartitionState, pp.o.Partitions)
	for part := range out {
		s := PartitionState{Partition: part, Checkpoint: pp.ckpts[part], LastSeq: pp.lasts[part]}
		s.Lag = s.LastSeq - min(s.LastSeq, s.Checkpoint)
		if o := pp.owners[part]; o.instance != "" && now.Sub(o.written) < pp.o.LeaseTTL {
			s.Owner = o.instance
		}
		if rp := pp.running[part]; rp != nil {
			s.Owner, s.Mine, s.ProjectorErr = pp.o.Instance, true, rp.pr.Err()
		}
		out[part] = s
	}
	return out, pp.progressAt
}

// Instance returns this instance's name (PartitionOptions.Instance).
func (pp *Partitioned) Instance() string { return pp.o.Instance }

// LeaseErr returns the last error of the lease loop (the bucket does not
// answer, a partition could not be taken), nil when its last round worked.
// Unlike Err it leaves out the projectors.
func (pp *Partitioned) LeaseErr() error {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return pp.lastErr
}
