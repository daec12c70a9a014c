package main

import (
	"context"
	"errors"
	"sync"

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

// staleStore serves the HTTP reads: it passes them to the read model and
// remembers the last answer of each; while the read model fails (Postgres
// stopped, connections cut) it answers with that last answer instead of an
// error. Every view carries its last_seq and every list the applied_seq,
// and /healthz says degraded meanwhile, so a reader knows how old it is.
// Safe for concurrent use.
type staleStore struct {
	projections.Store

	mu     sync.Mutex
	views  map[projections.SKUKey]projections.View
	lists  map[string][]projections.View
	alerts map[projections.AlertFilter][]projections.Alert
}

func newStaleStore(s projections.Store) *staleStore {
	return &staleStore{Store: s, views: map[projections.SKUKey]projections.View{},
		lists: map[string][]projections.View{}, alerts: map[projections.AlertFilter][]projections.Alert{}}
}

// remember stores v under k in m, emptying m first when it is full.
func remember[K comparable, V any](mu *sync.Mutex, m map[K]V, k K, v V, max int) {
	mu.Lock()
	defer mu.Unlock()
	if _, ok := m[k]; !ok && len(m) >= max {
		clear(m)
	}
	m[k] = v
}

func recall[K comparable, V any](mu *sync.Mutex, m map[K]V, k K) (V, bool) {
	mu.Lock()
	defer mu.Unlock()
	v, ok := m[k]
	return v, ok
}

func (s *staleStore) SKU(ctx context.Context, shop, sku string) (projections.View, error) {
	k := projections.SKUKey{Shop: shop, SKU: sku}
	v, err := s.Store.SKU(ctx, shop, sku)
	if err == nil {
		remember(&s.mu, s.views, k, v, staleViewsMax)
		return v, nil
	}
	if !errors.Is(err, projections.ErrNotFound) {
		if old, ok := recall(&s.mu, s.views, k); ok {
			return old, nil
		}
	}
	return v, err
}

func (s *staleStore) SKUs(ctx context.Context, shop string) ([]projections.View, error) {
	vs, err := s.Store.SKUs(ctx, shop)
	if err == nil {
		remember(&s.mu, s.lists, shop, vs, staleListsMax)
		return vs, nil
	}
	if old, ok := recall(&s.mu, s.lists, shop); ok {
		return old, nil
	}
	return vs, err
}

func (s *staleStore) Alerts(ctx context.Context, f projections.AlertFilter) ([]projections.Alert, error) {
	as, err := s.Store.Alerts(ctx, f)
	if err == nil {
		remember(&s.mu, s.alerts, f, as, staleListsMax)
		return as, nil
	}
	if old, ok := recall(&s.mu, s.alerts, f); ok {
		return old, nil
	}
	return as, err
}
