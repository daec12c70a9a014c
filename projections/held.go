package projections

import (
	"context"
	"fmt"
	"slices"

	"stockledger/ledger"
)

// smallMap is the size under which an emptied or pruned map is kept for
// reuse rather than made anew: a Go map keeps the room of its largest size.
const smallMap = 256

// held is the bookkeeping between the fold and a store: which lines changed
// (dirty) or are new to the store (fresh) since the last ClearDirty, which
// closed lines memory may forget once committed (retired), and the natural
// keys of the keyed events (see keyed) memory knows.
type held struct {
	dirty, fresh map[string]struct{}
	retired      []string
	// keys are the natural keys of keyed events known in memory: applied since the last
	// Prune, or recalled from the store; freshKeys those not yet given to
	// a store.
	keys      map[string]struct{}
	freshKeys []string
	// linesHigh is the most lines Lines has held since it was last made
	// anew (see Prune).
	linesHigh int
}

func (h *held) reset() {
	h.dirty, h.fresh = make(map[string]struct{}), make(map[string]struct{})
	h.keys = make(map[string]struct{})
	h.retired, h.freshKeys = nil, nil
}

// touch marks a line changed.
func (s *SKU) touch(l *Line) { s.dirty[l.OrderID] = struct{}{} }

// DirtyLines returns the lines changed since the last ClearDirty, by order
// id, for a store to write.
func (s *SKU) DirtyLines() []*Line {
	out := make([]*Line, 0, len(s.dirty))
	for id := range s.dirty {
		out = append(out, s.Lines[id])
	}
	slices.SortFunc(out, byID)
	return out
}

// FreshKeys returns the natural keys applied since the last ClearDirty, for a
// store to keep for ever.
func (s *SKU) FreshKeys() []string { return s.freshKeys }

// Fresh reports whether the line was created in memory since the last
// ClearDirty: a store has never been given it, and may insert it without
// looking for an older copy.
func (s *SKU) Fresh(orderID string) bool {
	_, ok := s.fresh[orderID]
	return ok
}

// ClearDirty forgets which lines changed, which are new and which keys are
// new; call it once a store has them (Writer.Stage returned).
func (s *SKU) ClearDirty() {
	s.dirty = emptied(s.dirty)
	s.fresh = emptied(s.fresh)
	s.freshKeys = nil
}

// emptied returns m empty: cleared when it is small, a new map when it is
// large, so that a burst does not keep its room for good.
func emptied(m map[string]struct{}) map[string]struct{} {
	if len(m) <= smallMap {
		clear(m)
		return m
	}
	return make(map[string]struct{})
}

// NeedsLine reports whether e names a line the SKU does not hold in memory:
// one the store may know, closed. Before applying such an event the caller
// recalls the line from the store (Writer.KnownLines, then Recall), or the
// fold would take a re-sent sale of a closed line for a new one.
func (s *SKU) NeedsLine(e *ledger.Event) bool {
	switch e.Type {
	case ledger.Sale, ledger.Cancel, ledger.Shipment, ledger.Return, ledger.PromiseChanged:
		_, ok := s.Lines[e.OrderID]
		return !ok
	}
	return false
}

// Recall puts back a closed line the store returned, so that the fold
// recognizes it; the next Prune forgets it again. A line the SKU holds, or
// one that is open or early (LoadSKU returns those; the store cannot hold a
// newer one than memory), is left alone.
func (s *SKU) Recall(l Line) {
	if _, ok := s.Lines[l.OrderID]; ok || l.State() != LineClosed {
		return
	}
	s.Lines[l.OrderID] = &l
	s.retired = append(s.retired, l.OrderID)
}

// keyed reports whether the fold remembers e's natural key itself: every
// type but the line events (sale, cancel, shipment, return), whose keys the
// line's own documents answer for.
func keyed(e *ledger.Event) bool {
	switch e.Type {
	case ledger.Sale, ledger.Cancel, ledger.Shipment, ledger.Return:
		return false
	}
	return true
}

// NeedsKey reports whether e is keyed by the fold (a restock, a setting, a
// recount, a promise change) and memory does not know its key: the store
// may have applied it before. The caller asks the store (Writer.KnownKeys)
// and recalls what it knows (RecallKey).
func (s *SKU) NeedsKey(e *ledger.Event) bool {
	if !keyed(e) {
		return false
	}
	_, ok := s.keys[e.Key()]
	return !ok
}

// knownKey reports whether the key was applied before, as far as memory
// knows (after the batch's recalls).
func (s *SKU) knownKey(key string) bool {
	_, ok := s.keys[key]
	return ok
}

// RecallKey tells the SKU that a store has applied key before.
func (s *SKU) RecallKey(key string) { s.keys[key] = struct{}{} }

// takeKey records a key applied now; false when it was applied before.
func (s *SKU) takeKey(key string) bool {
	if _, ok := s.keys[key]; ok {
		return false
	}
	s.keys[key] = struct{}{}
	s.freshKeys = append(s.freshKeys, key)
	return true
}

// Prune forgets the lines closed since the last Prune that are not dirty, and
// the natural keys already given to a store: a commit has written them, and
// the store answers for them from now on. The projector calls it once a
// batch is committed.
func (s *SKU) Prune() {
	s.linesHigh = max(s.linesHigh, len(s.Lines))
	keep := s.retired[:0]
	for _, id := range s.retired {
		l, ok := s.Lines[id]
		if !ok {
			continue
		}
		if _, dirty := s.dirty[id]; dirty {
			keep = append(keep, id)
			continue
		}
		if l.State() == LineClosed {
			delete(s.Lines, id)
		}
	}
	clear(s.retired[len(keep):])
	s.retired = keep
	if len(s.freshKeys) == 0 {
		s.keys = emptied(s.keys)
	}
	if s.linesHigh > smallMap && len(s.Lines) < s.linesHigh/4 {
		// Copied into a map sized for what it holds (maps.Clone would keep
		// the old one's room).
		lines := make(map[string]*Line, len(s.Lines))
		for id, l := range s.Lines {
			lines[id] = l
		}
		s.Lines, s.linesHigh = lines, len(lines)
	}
}

// Recalls gathers what the SKUs of a batch must recall from a store before
// folding it (the lines and natural keys its events name that memory does
// not hold), so that one query of each kind asks for all of it. The zero
// value is ready. It is not safe for concurrent use.
type Recalls struct {
	lines    map[LineKey]*SKU
	lineKeys []LineKey
	keys     map[KeyRef]*SKU
	keyRefs  []KeyRef
}

// Add notes what s must recall before applying e, if anything. Call it for
// every event of the batch before any is applied.
func (r *Recalls) Add(s *SKU, e *ledger.Event) {
	if s.NeedsLine(e) {
		k := LineKey{Shop: e.Shop, SKU: e.SKU, OrderID: e.OrderID}
		if r.lines == nil {
			r.lines = make(map[LineKey]*SKU)
		}
		if _, ok := r.lines[k]; !ok {
			r.lines[k] = s
			r.lineKeys = append(r.lineKeys, k)
		}
	}
	if s.NeedsKey(e) {
		k := KeyRef{Shop: e.Shop, SKU: e.SKU, Key: e.Key()}
		if r.keys == nil {
			r.keys = make(map[KeyRef]*SKU)
		}
		if _, ok := r.keys[k]; !ok {
			r.keys[k] = s
			r.keyRefs = append(r.keyRefs, k)
		}
	}
}

// Fetch asks w for every line and key noted (one query each) and gives the
// SKUs what the store knows. With a filter f of the lines w may hold, it
// asks only about those f cannot rule out, and adds every line noted to f:
// the fold may write any of them. On an error no SKU was changed.
func (r *Recalls) Fetch(ctx context.Context, w Writer, f *LineFilter) error {
	var lines map[LineKey]Line
	var keys map[KeyRef]bool
	var err error
	ask := r.lineKeys
	if f != nil {
		ask = nil
		for _, k := range r.lineKeys {
			if f.MayHoldAdd(k) {
				ask = append(ask, k)
			}
		}
	}
	if len(ask) > 0 {
		if lines, err = w.KnownLines(ctx, ask); err != nil {
			return fmt.Errorf("recall %d lines: %w", len(ask), err)
		}
	}
	if len(r.keyRefs) > 0 {
		if keys, err = w.KnownKeys(ctx, r.keyRefs); err != nil {
			return fmt.Errorf("recall %d keys: %w", len(r.keyRefs), err)
		}
	}
	for k, l := range lines {
		if s := r.lines[k]; s != nil {
			s.Recall(l)
		}
	}
	for k := range keys {
		if s := r.keys[k]; s != nil {
			s.RecallKey(k.Key)
		}
	}
	return nil
}

// RecallFor recalls from w what s must know before applying e (Recalls of
// one event).
func RecallFor(ctx context.Context, w Writer, s *SKU, e *ledger.Event) error {
	var r Recalls
	r.Add(s, e)
	return r.Fetch(ctx, w, nil)
}
