package projections

import (
	"fmt"
	"testing"
)

// TestLineFilterGrows: no key added is ever ruled out, across the parts the
// filter grows into, and keys never added are taken for held at about the
// rate the filter is sized for.
func TestLineFilterGrows(t *testing.T) {
	const first = 1 << 14
	n := first * 7 / 2 // the first two parts full, the third half
	f := newLineFilter(first)
	key := func(i int) LineKey {
		return LineKey{Shop: fmt.Sprintf("shop-%d", i%7), SKU: fmt.Sprintf("sku-%d", i%1000), OrderID: fmt.Sprintf("o-%d", i)}
	}
	fresh := 0 // keys MayHoldAdd took for new, all but its false positives
	for i := range n {
		if i%2 == 0 {
			f.add(key(i))
		} else if !f.MayHoldAdd(key(i)) {
			fresh++
		}
	}
	if fresh < n/2*98/100 {
		t.Errorf("MayHoldAdd took %d of %d new keys for held ones", n/2-fresh, n/2)
	}
	if len(f.parts) != 3 || f.Keys() != n/2+fresh || f.full {
		t.Fatalf("after %d keys: %d parts, %d keys, full %v; want 3 parts and %d keys", n, len(f.parts), f.Keys(), f.full, n/2+fresh)
	}
	for i := range n {
		if !f.mayHold(key(i)) {
			t.Fatalf("key %d was added and is ruled out", i)
		}
	}
	const probes = 50_000
	held := 0
	for i := n; i < n+probes; i++ {
		if f.mayHold(key(i)) {
			held++
		}
	}
	// Sized for 1%, 0.5% and 0.25% (half full): under 2% together.
	if rate := float64(held) / probes; rate > 2*lineFilterRate {
		t.Errorf("false positives: %d of %d keys never added (%.2f%%), want under %.0f%%", held, probes, 100*rate, 200*lineFilterRate)
	}
	t.Logf("%d keys in %d bytes; false positives %d of %d", n, f.Bytes(), held, probes)
}

// TestLineFilterFull: once its last part is full the filter rules nothing
// out.
func TestLineFilterFull(t *testing.T) {
	f := newLineFilter(4)
	never := LineKey{Shop: "s", SKU: "a", OrderID: "never"}
	n := 0
	for ; !f.full; n++ {
		f.add(LineKey{Shop: "s", SKU: "a", OrderID: fmt.Sprintf("o-%d", n)})
	}
	if want := 4*(1<<lineFilterParts-1) + 1; n != want || len(f.parts) != lineFilterParts {
		t.Errorf("full after %d keys in %d parts, want %d keys in %d", n, len(f.parts), want, lineFilterParts)
	}
	if !f.mayHold(never) {
		t.Errorf("a full filter rules out a key it never took")
	}
}

// TestAppendKeyParts: the parts of a key are kept apart.
func TestAppendKeyParts(t *testing.T) {
	a := appendKey(nil, "ab", "c", "d")
	b := appendKey(nil, "a", "bc", "d")
	if string(a) == string(b) {
		t.Errorf("keys (ab, c, d) and (a, bc, d) hash alike: %q", a)
	}
	if got := appendKey(nil, []byte("ab"), []byte("c"), []byte("d")); string(got) != string(a) {
		t.Errorf("bytes and strings give %q and %q", got, a)
	}
}
