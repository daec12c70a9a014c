package projections

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// outboxMax bounds the memory store's outbox. Commit refuses a batch that
// would overflow it (the projector then waits for the publisher to drain).
const outboxMax = 1 << 20

// ErrOutboxFull is returned by Commit when the alert outbox has no room.
var ErrOutboxFull = errOutboxFull{}

type errOutboxFull struct{}

// Error says the outbox is full.
func (errOutboxFull) Error() string { return "alert outbox full: alerts are not being published" }

// MemoryStore is the in-memory read model. It is lost with the process and
// rebuilt from the stream at start. It is safe for concurrent use.
type MemoryStore struct {
	mu          sync.RWMutex
	checkpoints map[string]uint64
	skus        map[SKUKey]*memSKU
	alerts      map[string]Alert
	outbox      []OutboxAlert
	outboxNext  int64
	shops       map[string]Shop
	syncOutbox  []OutboxSync
	syncNext    int64
}

type memSKU struct {
	state SKU // scalars and suppliers only
	view  View
	lines map[string]Line
	keys  map[string]struct{} // natural keys applied (restocks)
	open  map[string]struct{} // ids of the SKU's open alerts
}

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{
		checkpoints: make(map[string]uint64),
		skus:        make(map[SKUKey]*memSKU),
		alerts:      make(map[string]Alert),
		shops:       make(map[string]Shop),
	}
}

// Checkpoint implements Writer.
func (m *MemoryStore) Checkpoint(_ context.Context, projector string) (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.checkpoints[projector], nil
}

// LoadSKU implements Writer.
func (m *MemoryStore) LoadSKU(_ context.Context, shop, sku string) (*SKU, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.loadSKU(SKUKey{shop, sku}), nil
}

// LoadSKUs implements Writer.
func (m *MemoryStore) LoadSKUs(_ context.Context, keys []SKUKey) (map[SKUKey]*SKU, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[SKUKey]*SKU, len(keys))
	for _, k := range keys {
		if s := m.loadSKU(k); s != nil {
			out[k] = s
		}
	}
	return out, nil
}

// loadSKU returns a copy of SKU k's state as committed, nil when unknown.
// Caller holds m.mu.
func (m *MemoryStore) loadSKU(k SKUKey) *SKU {
	rec, ok := m.skus[k]
	if !ok {
		return nil
	}
	s := rec.state.clone()
	s.Lines = make(map[string]*Line)
	for id, l := range rec.lines {
		if l.State() != LineClosed {
			s.Lines[id] = l.clone()
		}
	}
	s.Alerts = make(map[string]*Alert, len(rec.open))
	for id := range rec.open {
		a := m.alerts[id]
		s.Alerts[alertKey(a.Kind, a.OrderID)] = &a
	}
	s.Restore()
	return s
}

// KnownLines implements Writer.
func (m *MemoryStore) KnownLines(_ context.Context, keys []LineKey) (map[LineKey]Line, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[LineKey]Line)
	for _, k := range keys {
		if rec, ok := m.skus[SKUKey{k.Shop, k.SKU}]; ok {
			if l, ok := rec.lines[k.OrderID]; ok {
				out[k] = *l.clone()
			}
		}
	}
	return out, nil
}

// KnownKeys implements Writer.
func (m *MemoryStore) KnownKeys(_ context.Context, keys []KeyRef) (map[KeyRef]bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[KeyRef]bool)
	for _, k := range keys {
		if rec, ok := m.skus[SKUKey{k.Shop, k.SKU}]; ok {
			if _, ok := rec.keys[k.Key]; ok {
				out[k] = true
			}
		}
	}
	return out, nil
}

// memWrite is one SKU of a prepared batch: copies, so that the caller may
// change the SKU while the write waits.
type memWrite struct {
	key   SKUKey
	state *SKU
	view  View
	lines []Line
	keys  []string
}

// Stage implements Writer.
func (m *MemoryStore) Stage(b *Batch) (CommitFunc, error) {
	st := &memStaged{projector: b.Projector, prev: b.PrevSeq, last: b.LastSeq,
		writes: make([]memWrite, len(b.SKUs)), alerts: slices.Clone(b.Alerts)}
	for i, s := range b.SKUs {
		w := &st.writes[i]
		w.key = SKUKey{s.Shop, s.SKU}
		w.state = s.clone()
		if b.Views != nil {
			w.view = b.Views[i]
		} else {
			w.view = s.View()
		}
		for _, l := range s.DirtyLines() {
			w.lines = append(w.lines, *l.clone())
		}
		w.keys = slices.Clone(s.FreshKeys())
	}
	for _, sh := range b.Shops {
		st.shops = append(st.shops, Shop{Shop: sh.Shop, Totals: sh.Totals, LastSeq: sh.LastSeq})
	}
	if err := st.encodeOutbox(b); err != nil {
		return nil, fmt.Errorf("commit batch to seq %d: %w", b.LastSeq, err)
	}
	return func(context.Context) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.checkpoints[st.projector] != st.prev {
			return ErrCheckpointMoved
		}
		if len(m.outbox)+len(st.outbox) > outboxMax || len(m.syncOutbox)+len(st.sync) > outboxMax {
			return ErrOutboxFull
		}
		st.apply(m)
		return nil
	}, nil
}

// memStaged is a staged batch: copies, so that the caller may change the
// SKUs while the write waits.
type memStaged struct {
	projector  string
	prev, last uint64
	writes     []memWrite
	alerts     []Alert
	shops      []Shop
	// outbox and sync are the batch's outbox entries, encoded at Stage as
	// the Postgres store encodes them; apply numbers them.
	outbox []OutboxAlert
	sync   []OutboxSync
}

// encodeOutbox encodes b's alert changes and sync instructions for the
// outboxes.
func (st *memStaged) encodeOutbox(b *Batch) error {
	st.outbox, st.sync = make([]OutboxAlert, len(b.Alerts)), make([]OutboxSync, len(b.Sync))
	for i := range b.Alerts {
		var err error
		if st.outbox[i], err = NewOutboxAlert(&b.Alerts[i], b.LastSeq); err != nil {
			return err
		}
	}
	for i := range b.Sync {
		var err error
		if st.sync[i], err = NewOutboxSync(&b.Sync[i], b.LastSeq); err != nil {
			return err
		}
	}
	return nil
}

// apply writes the batch. Caller holds m.mu.
func (st *memStaged) apply(m *MemoryStore) {
	for _, w := range st.writes {
		rec, ok := m.skus[w.key]
		if !ok {
			rec = &memSKU{lines: make(map[string]Line), keys: make(map[string]struct{}), open: make(map[string]struct{})}
			m.skus[w.key] = rec
		}
		rec.state, rec.view = *w.state, w.view
		for _, l := range w.lines {
			rec.lines[l.OrderID] = l
		}
		for _, k := range w.keys {
			rec.keys[k] = struct{}{}
		}
	}
	for _, sh := range st.shops {
		m.shops[sh.Shop] = sh
	}
	for _, a := range st.alerts {
		m.alerts[a.ID] = a
		if rec := m.skus[SKUKey{a.Shop, a.SKU}]; rec != nil {
			if a.State == AlertOpen {
				rec.open[a.ID] = struct{}{}
			} else {
				delete(rec.open, a.ID)
			}
		}
	}
	for _, ob := range st.outbox {
		m.outboxNext++
		ob.ID = m.outboxNext
		m.outbox = append(m.outbox, ob)
	}
	for _, ob := range st.sync {
		m.syncNext++
		ob.ID = m.syncNext
		m.syncOutbox = append(m.syncOutbox, ob)
	}
	m.checkpoints[st.projector] = st.last
}

// LoadShop implements Writer.
func (m *MemoryStore) LoadShop(_ context.Context, shop string) (*Shop, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	sh, ok := m.shops[shop]
	if !ok {
		return nil, nil
	}
	for _, a := range m.alerts {
		if a.Shop == shop && a.SKU == "" && a.Kind == FulfilmentRisk && a.State == AlertOpen {
			sh.Alert = &a
		}
	}
	return &sh, nil
}

// ShopHealth implements Reader.
func (m *MemoryStore) ShopHealth(_ context.Context, shop string, now time.Time) (ShopHealth, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	sh, ok := m.shops[shop]
	h := ShopHealth{Shop: shop}
	for k, rec := range m.skus {
		if k.Shop != shop {
			continue
		}
		h.SKUs++
		for _, l := range rec.lines {
			if l.State() == LineOpen && !l.ShipBy.IsZero() && l.ShipBy.After(now) && !l.ShipBy.After(now.Add(dueWindow)) {
				h.DueWithin24h++
			}
		}
	}
	if !ok && h.SKUs == 0 {
		return h, ErrNotFound
	}
	h.fill(sh)
	return h, nil
}

// PendingSync implements Outbox.
func (m *MemoryStore) PendingSync(_ context.Context, limit int) ([]OutboxSync, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return firstOf(m.syncOutbox, limit), nil
}

// DeletePendingSync implements Outbox.
func (m *MemoryStore) DeletePendingSync(_ context.Context, upTo int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.syncOutbox = dropUpTo(m.syncOutbox, upTo, func(e OutboxSync) int64 { return e.ID })
	return nil
}

// DueSKUs implements Writer.
func (m *MemoryStore) DueSKUs(_ context.Context, now time.Time, limit int) ([]SKUKey, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []SKUKey
	for k, rec := range m.skus {
		if len(out) == limit {
			break
		}
		if d := rec.state.NextDue; !d.IsZero() && !d.After(now) {
			out = append(out, k)
		}
	}
	return out, nil
}

// SKU implements Reader.
func (m *MemoryStore) SKU(_ context.Context, shop, sku string) (View, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	rec, ok := m.skus[SKUKey{shop, sku}]
	if !ok {
		return View{}, ErrNotFound
	}
	return rec.view, nil
}

// SKUs implements Reader.
func (m *MemoryStore) SKUs(_ context.Context, shop string) ([]View, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := []View{}
	for k, rec := range m.skus {
		if k.Shop == shop {
			out = append(out, rec.view)
		}
	}
	slices.SortFunc(out, func(a, b View) int { return cmp.Compare(a.SKU, b.SKU) })
	if len(out) > MaxReadRows {
		out = out[:MaxReadRows]
	}
	return out, nil
}

// Alerts implements Reader.
func (m *MemoryStore) Alerts(_ context.Context, f AlertFilter) ([]Alert, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := []Alert{}
	for _, a := range m.alerts {
		if a.Shop == f.Shop && (f.State == "" || a.State == f.State) {
			out = append(out, a)
		}
	}
	SortAlerts(out)
	limit := f.Limit
	if limit <= 0 || limit > MaxReadRows {
		limit = MaxReadRows
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// SortAlerts orders alerts as reads return them: the most money at risk
// first, then the oldest raised, then by id.
func SortAlerts(as []Alert) {
	slices.SortFunc(as, func(a, b Alert) int {
		return cmp.Or(cmp.Compare(b.ExposureFen, a.ExposureFen), a.RaisedAt.Compare(b.RaisedAt), cmp.Compare(a.ID, b.ID))
	})
}

// PendingAlerts implements Outbox.
func (m *MemoryStore) PendingAlerts(_ context.Context, limit int) ([]OutboxAlert, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return firstOf(m.outbox, limit), nil
}

// DeletePendingAlerts implements Outbox.
func (m *MemoryStore) DeletePendingAlerts(_ context.Context, upTo int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.outbox = dropUpTo(m.outbox, upTo, func(e OutboxAlert) int64 { return e.ID })
	return nil
}

// firstOf returns a copy of the first limit entries of an outbox queue.
func firstOf[T any](q []T, limit int) []T {
	return slices.Clone(q[:max(0, min(limit, len(q)))])
}

// dropUpTo removes the entries of an outbox queue, oldest first, whose id
// is at most upTo.
func dropUpTo[T any](q []T, upTo int64, id func(T) int64) []T {
	i := 0
	for i < len(q) && id(q[i]) <= upTo {
		i++
	}
	return slices.Delete(q, 0, i)
}

// Ping implements Reader; memory always answers.
func (m *MemoryStore) Ping(context.Context) error { return nil }

// Close implements Store.
func (m *MemoryStore) Close() {}
