package ledger

import (
	"strings"
	"testing"
)

// TestFoldKeyASCII: the ASCII fast path of foldKey agrees with the rune by
// rune fold for every printable ASCII byte and for the keys of an event, and
// the runes outside ASCII that fold onto ASCII letters (the Kelvin sign, the
// long s) land on the same key as those letters.
func TestFoldKeyASCII(t *testing.T) {
	for c := byte(0x20); c < 0x7f; c++ {
		if got, want := foldKey(string(c)), foldRunes(string(c)); got != want {
			t.Errorf("foldKey(%q) = %q, rune by rune %q", c, got, want)
		}
	}
	for _, k := range []string{"order_id", "unit_price_fen", "ship_within_hours", "SKU", "Qty", "deliver_by"} {
		if got, want := foldKey(k), foldRunes(k); got != want {
			t.Errorf("foldKey(%q) = %q, rune by rune %q", k, got, want)
		}
	}
	for _, pair := range [][2]string{{"\u212aind", "kind"}, {"\u017fku", "sku"}, {"qty", "QTY"}} {
		if a, b := foldKey(pair[0]), foldKey(pair[1]); a != b {
			t.Errorf("foldKey(%q) = %q, foldKey(%q) = %q: want the same", pair[0], a, pair[1], b)
		}
	}
}

// TestPlainKey: keys without escapes read as their bytes; escaped or
// non-ASCII keys are left to encoding/json.
func TestPlainKey(t *testing.T) {
	for raw, want := range map[string]string{`"sku"`: "sku", `""`: "", `"order_id"`: "order_id"} {
		if got, ok := plainKey([]byte(raw)); !ok || got != want {
			t.Errorf("plainKey(%s) = %q, %v; want %q, true", raw, got, ok, want)
		}
	}
	for _, raw := range []string{`"s\u006bu"`, `"ſku"`, "\"a\tb\"", `"a\"b"`} {
		if _, ok := plainKey([]byte(raw)); ok {
			t.Errorf("plainKey(%s) took the fast path", raw)
		}
	}
	if e := scanObject([]byte(`{"sku":"a","s\u006bu":"b"}`)); e == nil || !strings.Contains(e.Rule, "twice") {
		t.Errorf("an escaped duplicate key: got %v, want a given-twice error", e)
	}
}
