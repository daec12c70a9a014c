package projections

import (
	"context"

	"github.com/bits-and-blooms/bloom/v3"
)

// Line filter sizes. The first part holds lineFilterFirst keys at
// lineFilterRate; each part after it holds twice as many at half the rate,
// so that the rate of the whole stays under twice lineFilterRate however
// far it grows (a scalable Bloom filter). Once lineFilterParts parts are
// full (32.5 million keys in 55 MB) it stops answering: every key may be
// held, as without a filter, until the next load.
const (
	lineFilterFirst = 1 << 20
	lineFilterRate  = 0.01
	lineFilterParts = 5
)

// LineLister is a Writer that can list the keys of every line it holds, so
// that a projector can keep a LineFilter of them and ask KnownLines only
// about lines the store may hold. The Postgres store is one; the memory
// store, rebuilt at every start and asked without a round trip, is not.
type LineLister interface {
	// LineKeys calls add with the shop, SKU and order id of every line
	// the store holds, whatever its state, and returns how many. The
	// slices are valid only during the call.
	LineKeys(ctx context.Context, add func(shop, sku, orderID []byte)) (int, error)
}

// LineFilter answers whether a store may hold an order line without asking
// it: a Bloom filter of every line key the store held when it was loaded
// and of every key the projector asked about since (the only lines the
// projector can write). "No" is certain; "maybe" is wrong about one time in
// fifty at most, and then KnownLines answers. A new sale, the usual event,
// names a line no store holds: the filter saves its query.
//
// It is not safe for concurrent use. The zero value is not ready; see
// NewLineFilter.
type LineFilter struct {
	first int // keys the first part takes
	parts []*bloom.BloomFilter
	room  int // keys the last part takes before the next is added
	keys  int // keys added (see Keys)
	full  bool
	buf   []byte
}

var _ LineLister = (*PostgresStore)(nil)

// NewLineFilter returns an empty filter.
func NewLineFilter() *LineFilter { return newLineFilter(lineFilterFirst) }

// newLineFilter returns an empty filter whose first part takes first keys.
func newLineFilter(first int) *LineFilter {
	f := &LineFilter{first: first}
	f.grow()
	return f
}

// grow adds a part twice as large as the last, at half its rate.
func (f *LineFilter) grow() {
	n, rate := f.first, lineFilterRate
	for range f.parts {
		n, rate = n*2, rate/2
	}
	f.parts = append(f.parts, bloom.NewWithEstimates(uint(n), rate))
	f.room = n
}

// appendKey appends the bytes a line key is hashed as: its three parts,
// each ended by a zero byte. Two keys that read the same (a part holding a
// zero byte) only cost a query.
func appendKey[T string | []byte](b []byte, shop, sku, orderID T) []byte {
	b = append(b, shop...)
	b = append(b, 0)
	b = append(b, sku...)
	b = append(b, 0)
	b = append(b, orderID...)
	return append(b, 0)
}

// addBytes adds a line key given as bytes.
func (f *LineFilter) addBytes(shop, sku, orderID []byte) {
	if f.full {
		return
	}
	f.buf = appendKey(f.buf[:0], shop, sku, orderID)
	f.addBuf()
}

// addBuf adds the key in f.buf.
func (f *LineFilter) addBuf() {
	if f.room == 0 {
		if len(f.parts) == lineFilterParts {
			f.full = true
			return
		}
		f.grow()
	}
	f.parts[len(f.parts)-1].Add(f.buf)
	f.room--
	f.keys++
}

// add notes that the store may hold line k.
func (f *LineFilter) add(k LineKey) {
	if f.full {
		return
	}
	f.buf = appendKey(f.buf[:0], k.Shop, k.SKU, k.OrderID)
	f.addBuf()
}

// MayHoldAdd reports whether the store may hold line k (false only when it
// certainly does not), and notes that it may from now on, hashing k once.
func (f *LineFilter) MayHoldAdd(k LineKey) bool {
	if f.full {
		return true
	}
	f.buf = appendKey(f.buf[:0], k.Shop, k.SKU, k.OrderID)
	last := len(f.parts) - 1
	for _, p := range f.parts[:last] {
		if p.Test(f.buf) {
			return true
		}
	}
	if f.room == 0 {
		if f.parts[last].Test(f.buf) {
			return true
		}
		f.addBuf()
		return false
	}
	held := f.parts[last].TestAndAdd(f.buf)
	if !held {
		f.room--
		f.keys++
	}
	return held
}

// mayHold reports whether the store may hold line k, without noting it.
func (f *LineFilter) mayHold(k LineKey) bool {
	if f.full {
		return true
	}
	f.buf = appendKey(f.buf[:0], k.Shop, k.SKU, k.OrderID)
	for _, p := range f.parts {
		if p.Test(f.buf) {
			return true
		}
	}
	return false
}

// Keys returns how many keys were added: each line loaded, and each line
// MayHoldAdd found not held.
func (f *LineFilter) Keys() int { return f.keys }

// Bytes returns the memory the filter's bits take.
func (f *LineFilter) Bytes() int {
	var bits uint
	for _, p := range f.parts {
		bits += p.Cap()
	}
	return int(bits / 8)
}

// LoadLineFilter returns a filter of every line l holds.
func LoadLineFilter(ctx context.Context, l LineLister) (*LineFilter, error) {
	f := NewLineFilter()
	if _, err := l.LineKeys(ctx, f.addBytes); err != nil {
		return nil, err
	}
	return f, nil
}
