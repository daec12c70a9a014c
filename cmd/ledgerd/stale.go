package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"stockledger/projections"
)

// Bounds of the stale-read cache. When a map is full it is emptied: the
// cache only serves reads while the store is down, so losing it costs
// nothing but the stale answers of that moment.
const (
	// staleViewsMax bounds the SKU views kept.
	staleViewsMax = 100_000
	// staleListsMax bounds the shop lists (SKU lists and alert lists) kept.
	staleListsMax = 1_000
)

// staleModel serves the HTTP reads (the model interface): it reads the
// projection's applied sequence, then the read model, and remembers the
// last answer of each read with that sequence; while the read model fails
// (Postgres stopped, connections cut) it answers with that last answer and
// its sequence instead of an error. Every view carries its last_seq and
// every list the applied_seq, and /healthz says degraded meanwhile, so a
// reader knows how old it is. Safe for concurrent use.
type staleModel struct {
	store    projections.Reader
	progress interface{ Applied() uint64 }

	mu     sync.Mutex
	views  map[projections.SKUKey]stamped[projections.View]
	lists  map[string]stamped[[]projections.View]
	alerts map[projections.AlertFilter]stamped[[]projections.Alert]
	shops  map[string]stamped[projections.ShopHealth]
}

// stamped is an answer with the applied sequence read before it.
type stamped[T any] struct {
	v       T
	applied uint64
}

func newStaleModel(store projections.Reader, p interface{ Applied() uint64 }) *staleModel {
	return &staleModel{store: store, progress: p, views: map[projections.SKUKey]stamped[projections.View]{},
		lists: map[string]stamped[[]projections.View]{}, alerts: map[projections.AlertFilter]stamped[[]projections.Alert]{},
		shops: map[string]stamped[projections.ShopHealth]{}}
}

// readStamped reads the applied sequence, then the answer (read), and
// remembers both in m under k, emptying m first when it holds max. When
// read fails with an error for which stale is true, it answers what m
// remembers, if anything.
func readStamped[K comparable, T any](s *staleModel, m map[K]stamped[T], k K, max int,
	read func() (T, error), stale func(error) bool) (T, uint64, error) {
	// The order is the contract of the header: the projection commits
	// before it reports a sequence applied, so an answer read after the
	// sequence reflects every event at or below it.
	applied := s.progress.Applied()
	v, err := read()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		if _, ok := m[k]; !ok && len(m) >= max {
			clear(m)
		}
		m[k] = stamped[T]{v: v, applied: applied}
		return v, applied, nil
	}
	if old, ok := m[k]; ok && stale(err) {
		return old.v, old.applied, nil
	}
	return v, applied, err
}

func always(error) bool { return true }

// SKU returns one SKU's view and the applied sequence read before it; a
// SKU not found is not answered from the cache.
func (s *staleModel) SKU(ctx context.Context, shop, sku string) (projections.View, uint64, error) {
	return readStamped(s, s.views, projections.SKUKey{Shop: shop, SKU: sku}, staleViewsMax,
		func() (projections.View, error) { return s.store.SKU(ctx, shop, sku) },
		func(err error) bool { return !errors.Is(err, projections.ErrNotFound) })
}

// SKUs returns a shop's views and the applied sequence read before them.
func (s *staleModel) SKUs(ctx context.Context, shop string) ([]projections.View, uint64, error) {
	return readStamped(s, s.lists, shop, staleListsMax,
		func() ([]projections.View, error) { return s.store.SKUs(ctx, shop) }, always)
}

// Alerts returns alerts and the applied sequence read before them.
func (s *staleModel) Alerts(ctx context.Context, f projections.AlertFilter) ([]projections.Alert, uint64, error) {
	return readStamped(s, s.alerts, f, staleListsMax,
		func() ([]projections.Alert, error) { return s.store.Alerts(ctx, f) }, always)
}

// ShopHealth returns a shop's totals (lines due counted against now) and the
// applied sequence read before them; a shop not found is not answered from
// the cache.
func (s *staleModel) ShopHealth(ctx context.Context, shop string, now time.Time) (projections.ShopHealth, uint64, error) {
	return readStamped(s, s.shops, shop, staleListsMax,
		func() (projections.ShopHealth, error) { return s.store.ShopHealth(ctx, shop, now) },
		func(err error) bool { return !errors.Is(err, projections.ErrNotFound) })
}
