package consumers

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
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
	// shops are the healths of the shops folded here (one partition's
	// shops: a shop never spans partitions), loaded when first named.
	shops map[string]*projections.Shop
	// heldSKUs and heldOrders count the SKU states cached and the order lines
	// they hold, recounted at most every heldCountEvery (see held).
	heldSKUs, heldOrders atomic.Int64
	heldCounted          time.Time
	// lines filters the recall of lines the store cannot hold (see
	// lineFilter); nil until loaded, and again after clear.
	lister projections.LineLister // nil: the store lists no lines, and every recall is asked
	lines  *projections.LineFilter
	log    *slog.Logger
}

func newFolder(store projections.Writer, o Options) *folder {
	lister, _ := store.(projections.LineLister)
	return &folder{
		store: store, cfg: o.Fold, now: o.Now, cacheMax: o.CacheMax,
		lister: lister, log: o.Log.With("projector", o.Name),
		own:   ownership{partitions: o.Partitions, part: o.Partition},
		cache: make(map[projections.SKUKey]*projections.SKU),
		shops: make(map[string]*projections.Shop),
	}
}

// foldResult is what folding one batch changed.
type foldResult struct {
	changed []*projections.SKU // each SKU once, in order of first change
	alerts  []projections.Alert
	applied map[ledger.Type]int
	deads   []dead // refused: by the decoder first, then by the fold
	// shops are the shops whose health changed, each once; sync the stock
	// sync instructions the changed SKUs call for.
	shops []*projections.Shop
	sync  []projections.SyncInstruction
}

// shopChanges collects the shops a batch changed, each once.
type shopChanges struct {
	seen map[*projections.Shop]bool
	list []*projections.Shop
}

func (sc *shopChanges) add(sh *projections.Shop) {
	if sc.seen == nil {
		sc.seen = make(map[*projections.Shop]bool)
	}
	if !sc.seen[sh] {
		sc.seen[sh] = true
		sc.list = append(sc.list, sh)
	}
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
		keys    = make([]projections.SKUKey, 0, len(ds))
	)
	for i := range ds {
		if d := &ds[i]; d.reason == "" {
			keys = append(keys, projections.SKUKey{Shop: d.event.Shop, SKU: d.event.SKU})
		}
	}
	if err := fo.loadAll(ctx, keys); err != nil {
		return nil, nil, err
	}
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
		if _, err := fo.shop(ctx, d.event.Shop); err != nil {
			return nil, nil, err
		}
		recalls.Add(s, d.event)
		items = append(items, folding{d, s})
	}
	f, err := fo.lineFilter(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := recalls.Fetch(ctx, fo.store, f); err != nil {
		return nil, nil, err
	}
	return items, deads, nil
}

// lineFilter returns the filter of the lines the store may hold, loaded
// from the store when there is none: at the first batch, and after clear
// (a write this projector did not make may have added lines). The filter
// then learns of every line the folder asks about, which includes every
// line it can write. It is nil when the store lists no lines.
func (fo *folder) lineFilter(ctx context.Context) (*projections.LineFilter, error) {
	if fo.lines != nil || fo.lister == nil {
		return fo.lines, nil
	}
	start := time.Now()
	f, err := projections.LoadLineFilter(ctx, fo.lister)
	if err != nil {
		return nil, fmt.Errorf("load the line filter: %w", err)
	}
	fo.log.Info("line filter loaded", "lines", f.Keys(), "bytes", f.Bytes(), "took", time.Since(start).Round(time.Millisecond))
	fo.lines = f
	return f, nil
}

// apply folds each event into its SKU, and the SKU's change into its
// shop's health, event by event; an event the fold refuses becomes a dead
// letter and changes nothing. Then each changed SKU is moved to the
// projector's clock and asked what the platform should show (SKU.Sync).
// Every shop a SKU names was loaded by prepare.
func (fo *folder) apply(items []folding) foldResult {
	res := foldResult{applied: make(map[ledger.Type]int)}
	seen := make(map[*projections.SKU]bool)
	var shops shopChanges
	for _, it := range items {
		sh := fo.shops[it.s.Shop]
		before := it.s.Contribution()
		as, err := it.s.Apply(it.d.seq, it.d.event)
		if err != nil {
			res.deads = append(res.deads, dead{it.d.msg, it.d.seq, err.Error()})
			continue
		}
		res.applied[it.d.event.Type]++
		res.alerts = append(res.alerts, as...)
		if after := it.s.Contribution(); after != before {
			res.alerts = append(res.alerts, sh.Add(it.d.seq, it.d.event.At, before, after)...)
			shops.add(sh)
		}
		if !seen[it.s] {
			seen[it.s] = true
			res.changed = append(res.changed, it.s)
		}
	}
	// A sale that arrives after its promise passed is late at once.
	now := fo.now()
	for _, s := range res.changed {
		res.alerts = append(res.alerts, fo.advance(s, now, &shops)...)
		if in, ok := s.Sync(); ok {
			res.sync = append(res.sync, in)
		}
	}
	res.shops = shops.list
	return res
}

// advance moves s to the clock now, and its shop by what that changed.
func (fo *folder) advance(s *projections.SKU, now time.Time, shops *shopChanges) []projections.Alert {
	sh := fo.shops[s.Shop]
	before := s.Contribution()
	as := s.Advance(now)
	if after := s.Contribution(); after != before {
		as = append(as, sh.Add(s.LastSeq, now, before, after)...)
		shops.add(sh)
	}
	return as
}

// shop returns the cached health of a shop, else the store's, else a new
// one.
func (fo *folder) shop(ctx context.Context, name string) (*projections.Shop, error) {
	if sh, ok := fo.shops[name]; ok {
		return sh, nil
	}
	sh, err := fo.store.LoadShop(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("load shop %s: %w", name, err)
	}
	if sh == nil {
		sh = projections.NewShop(name)
	}
	sh.Config = fo.cfg
	fo.shops[strings.Clone(name)] = sh
	return sh, nil
}

// sweep advances to now the clock of the SKUs of this projector's
// partition whose ship promise may have passed (the store's DueSKUs), and
// their shops' health, and returns what changed, with the alerts raised. On
// error nothing changed: SKUs advanced before it are dropped from the cache
// (and the shops with them).
func (fo *folder) sweep(ctx context.Context) (foldResult, error) {
	now := fo.now()
	keys, err := fo.store.DueSKUs(ctx, now, sweepSKUsMax)
	if err != nil {
		return foldResult{}, err
	}
	var res foldResult
	var shops shopChanges
	keys = slices.DeleteFunc(keys, func(k projections.SKUKey) bool { return !fo.own.owns(k.Shop) })
	if err := fo.loadAll(ctx, keys); err != nil {
		return foldResult{}, err
	}
	for _, k := range keys {
		s, err := fo.load(ctx, k)
		if err == nil {
			_, err = fo.shop(ctx, k.Shop)
		}
		if err != nil {
			fo.drop(res.changed)
			return foldResult{}, err
		}
		before := s.NextDue
		as := fo.advance(s, now, &shops)
		// A SKU whose NextDue moved is written too, even with nothing late:
		// else its stale NextDue keeps it among the candidates for ever.
		if len(as) > 0 || len(s.DirtyLines()) > 0 || !s.NextDue.Equal(before) {
			res.alerts = append(res.alerts, as...)
			res.changed = append(res.changed, s)
		}
	}
	res.shops = shops.list
	return res, nil
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
	fo.cache[ownKey(k)] = s
	return s, nil
}

// loadAll brings into the cache, in one read of the store, the states of
// the SKUs of keys it does not hold yet; SKUs the store does not know
// either start new. keys may repeat.
func (fo *folder) loadAll(ctx context.Context, keys []projections.SKUKey) error {
	var (
		missing []projections.SKUKey
		seen    map[projections.SKUKey]bool // made at the first miss: batches on cached SKUs allocate nothing
	)
	for _, k := range keys {
		if _, ok := fo.cache[k]; ok || seen[k] {
			continue
		}
		if seen == nil {
			seen = make(map[projections.SKUKey]bool)
		}
		seen[k] = true
		missing = append(missing, k)
	}
	if len(missing) == 0 {
		return nil
	}
	got, err := fo.store.LoadSKUs(ctx, missing)
	if err != nil {
		return fmt.Errorf("load %d skus: %w", len(missing), err)
	}
	for _, k := range missing {
		s := got[k]
		if s == nil {
			s = projections.NewSKU(k.Shop, k.SKU)
		}
		s.Config = fo.cfg
		fo.cache[ownKey(k)] = s
	}
	return nil
}

// ownKey copies k's strings: a decoded event's strings share one
// allocation, which a cache key kept for long would hold whole.
func ownKey(k projections.SKUKey) projections.SKUKey {
	return projections.SKUKey{Shop: strings.Clone(k.Shop), SKU: strings.Clone(k.SKU)}
}

// drop forgets SKU states changed by a sweep that did not commit, and
// their shops: they are reloaded from the store, as it last committed them.
func (fo *folder) drop(changed []*projections.SKU) {
	for _, s := range changed {
		delete(fo.cache, projections.SKUKey{Shop: s.Shop, SKU: s.SKU})
		delete(fo.shops, s.Shop)
	}
}

// clear forgets every cached state, after a failure that leaves memory
// ahead of the store.
func (fo *folder) clear() {
	clear(fo.cache)
	clear(fo.shops)
	fo.lines = nil
}

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
