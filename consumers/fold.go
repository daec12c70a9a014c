package consumers

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"stockledger/ledger"
	"stockledger/projections"
)

// Folder bounds.
const (
	// sweepSKUsMax bounds the SKUs one sweep loads.
	sweepSKUsMax = 1000
	// heldCountEvery bounds how often the folder recounts what its cache
	// holds (see Projector.Held).
	heldCountEvery = time.Second
)

// folder holds the SKU states the projector folds on, cached between
// batches, and folds batches and ship-promise sweeps into them. The cache
// runs ahead of the store while a write is in flight, so it drops a state
// only once the store has every change of it (committed, see trim), or
// all of them at once after a failure (clear). The fold loop owns it; held
// is safe for concurrent use.
type folder struct {
	store    projections.Writer
	cfg      projections.FoldConfig
	own      ownership
	now      func() time.Time
	cacheMax int
	cache    map[projections.SKUKey]*projections.SKU
	// heldSKUs and heldOrders count the SKU states cached and the order lines
	// they hold, recounted at most every heldCountEvery (see held).
	heldSKUs, heldOrders atomic.Int64
	heldCounted          time.Time
}

func newFolder(store projections.Writer, o Options) *folder {
	return &folder{
		store: store, cfg: o.Fold, now: o.Now, cacheMax: o.CacheMax,
		own:   ownership{partitions: o.Partitions, part: o.Partition},
		cache: make(map[projections.SKUKey]*projections.SKU),
	}
}

// foldResult is what folding one batch changed.
type foldResult struct {
	changed []*projections.SKU // each SKU once, in order of first change
	alerts  []projections.Alert
	applied map[ledger.Type]int
	deads   []dead // refused: by the decoder first, then by the fold
}

// folding is one event about to be folded into its SKU's state.
type folding struct {
	d *delivery
	s *projections.SKU
}

// fold folds the deliveries of a batch into the cached states. It changes
// nothing before every SKU the batch names is loaded and every order it
// needs recalled, so that an error (the store unreachable) leaves the
// states as they were and the batch may be folded again.
func (fo *folder) fold(ctx context.Context, ds []delivery) (foldResult, error) {
	items, deads, err := fo.prepare(ctx, ds)
	if err != nil {
		return foldResult{}, err
	}
	// From here on the cached states change: a failure resets them.
	res := fo.apply(items)
	res.deads = append(deads, res.deads...)
	return res, nil
}

// prepare loads the SKU of every valid delivery and recalls from the store
// the lines and restock keys the SKUs do not hold (new ones, or ones the
// store has), in one query of each per batch. Refused deliveries become dead
// letters.
func (fo *folder) prepare(ctx context.Context, ds []delivery) ([]folding, []dead, error) {
	var (
		items   = make([]folding, 0, len(ds))
		deads   []dead
		recalls projections.Recalls
	)
	for i := range ds {
		d := &ds[i]
		if d.reason != "" {
			deads = append(deads, dead{d.msg, d.seq, d.reason})
			continue
		}
		s, err := fo.load(ctx, projections.SKUKey{Shop: d.event.Shop, SKU: d.event.SKU})
		if err != nil {
			return nil, nil, err
		}
		recalls.Add(s, &d.event)
		items = append(items, folding{d, s})
	}
	if err := recalls.Fetch(ctx, fo.store); err != nil {
		return nil, nil, err
	}
	return items, deads, nil
}

// apply folds each event into its SKU; an event the fold refuses becomes a
// dead letter and changes nothing.
func (fo *folder) apply(items []folding) foldResult {
	res := foldResult{applied: make(map[ledger.Type]int)}
	seen := make(map[*projections.SKU]bool)
	for _, it := range items {
		as, err := it.s.Apply(it.d.seq, &it.d.event)
		if err != nil {
			res.deads = append(res.deads, dead{it.d.msg, it.d.seq, err.Error()})
			continue
		}
		res.applied[it.d.event.Type]++
		res.alerts = append(res.alerts, as...)
		if !seen[it.s] {
			seen[it.s] = true
			res.changed = append(res.changed, it.s)
		}
	}
	// A sale that arrives after its promise passed is late at once.
	now := fo.now()
	for _, s := range res.changed {
		res.alerts = append(res.alerts, s.Advance(now)...)
	}
	return res
}

// sweep advances to now the clock of the SKUs of this projector's
// partition whose ship promise may have passed (the store's DueSKUs) and
// returns those that changed, with the alerts raised. On error nothing
// changed: SKUs advanced before it are dropped from the cache.
func (fo *folder) sweep(ctx context.Context) ([]*projections.SKU, []projections.Alert, error) {
	now := fo.now()
	keys, err := fo.store.DueSKUs(ctx, now, sweepSKUsMax)
	if err != nil {
		return nil, nil, err
	}
	var changed []*projections.SKU
	var alerts []projections.Alert
	for _, k := range keys {
		if !fo.own.owns(k.Shop) {
			continue
		}
		s, err := fo.load(ctx, k)
		if err != nil {
			fo.drop(changed)
			return nil, nil, err
		}
		before := s.NextDue
		// A SKU whose NextDue moved is written too, even with nothing late:
		// else its stale NextDue keeps it among the candidates for ever.
		if as := s.Advance(now); len(as) > 0 || len(s.DirtyLines()) > 0 || !s.NextDue.Equal(before) {
			alerts = append(alerts, as...)
			changed = append(changed, s)
		}
	}
	return changed, alerts, nil
}

// load returns the cached state of SKU k, else the store's, else a new one.
func (fo *folder) load(ctx context.Context, k projections.SKUKey) (*projections.SKU, error) {
	if s, ok := fo.cache[k]; ok {
		return s, nil
	}
	s, err := fo.store.LoadSKU(ctx, k.Shop, k.SKU)
	if err != nil {
		return nil, fmt.Errorf("load %s/%s: %w", k.Shop, k.SKU, err)
	}
	if s == nil {
		s = projections.NewSKU(k.Shop, k.SKU)
	}
	s.Config = fo.cfg
	fo.cache[k] = s
	return s, nil
}

// drop forgets SKU states changed by a sweep that did not commit: they are
// reloaded from the store, as it last committed them.
func (fo *folder) drop(changed []*projections.SKU) {
	for _, s := range changed {
		delete(fo.cache, projections.SKUKey{Shop: s.Shop, SKU: s.SKU})
	}
}

// clear forgets every cached state, after a failure that leaves memory
// ahead of the store.
func (fo *folder) clear() { clear(fo.cache) }

// committed lets closed orders of the committed SKUs leave memory, and
// trims the cache past cacheMax. keep are the SKUs of the batch folded
// next, not committed yet: the cache keeps them whatever its size, since
// the store does not have their states. Caller has no write in flight.
func (fo *folder) committed(changed, keep []*projections.SKU) {
	for _, s := range changed {
		s.Prune()
	}
	fo.trim(append(keep, changed...))
	fo.countHeld()
}

// trim drops states not in keep until the cache holds cacheMax/2, once it
// holds more than cacheMax.
func (fo *folder) trim(keep []*projections.SKU) {
	if len(fo.cache) <= fo.cacheMax {
		return
	}
	kept := make(map[projections.SKUKey]*projections.SKU, len(keep))
	for _, s := range keep {
		kept[projections.SKUKey{Shop: s.Shop, SKU: s.SKU}] = s
	}
	for k := range fo.cache {
		if len(fo.cache) <= fo.cacheMax/2 {
			break
		}
		if _, ok := kept[k]; !ok {
			delete(fo.cache, k)
		}
	}
}

// countHeld recounts what the cache holds, at most every heldCountEvery.
func (fo *folder) countHeld() {
	if time.Since(fo.heldCounted) < heldCountEvery {
		return
	}
	fo.heldCounted = time.Now()
	var n int64
	for _, s := range fo.cache {
		n += int64(len(s.Lines))
	}
	fo.heldSKUs.Store(int64(len(fo.cache)))
	fo.heldOrders.Store(n)
}

// held returns the SKU states and orders counted by countHeld.
func (fo *folder) held() (skus, orders int64) {
	return fo.heldSKUs.Load(), fo.heldOrders.Load()
}
