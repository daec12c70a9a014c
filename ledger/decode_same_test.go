package ledger

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// sameSeeds are bodies the old decoder and the new one must treat alike:
// valid events of every type, and each way a body can be wrong.
var sameSeeds = []string{
	`{"id":"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b","type":"listing","shop":"shop-demo","sku":"sku_1-A","at":"2026-11-26T20:00:00Z","title":"Velvet lipstick, red","price_fen":9900,"sales_form":"spot","ship_within_hours":48,"stock":10}`,
	`{"id":"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b","type":"listing","shop":"s","sku":"k","at":"2026-11-26T20:00:00+08:00","title":"丝绒口红 红色","price_fen":9900,"sales_form":"presale","ship_within_days":15,"stock":0}`,
	`{"id":"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b","type":"delisting","shop":"s","sku":"k","at":"2026-11-26T20:00:00Z"}`,
	`{"id":"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b","type":"stock_set","shop":"s","sku":"k","at":"2026-11-26T20:00:00Z","stock":5}`,
	`{"id":"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b","type":"safety_stock_set","shop":"s","sku":"k","at":"2026-11-26T20:00:00Z","qty":3}`,
	`{"id":"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b","type":"restock","shop":"s","sku":"k","at":"2026-11-26T20:00:00Z","qty":5,"receipt_id":"GR-2026-0007"}`,
	`{"id":"6F1C2A3B-4D5E-4F60-8A7B-9C0D1E2F3A4B","type":"sale","shop":"s","sku":"k","at":"2026-11-26T20:00:00.123456Z","order_id":"ks-10000","parent_order_id":"dy-p1","unit_price_fen":9900,"live_id":"live-0412","ship_by":"2026-11-28T20:00:00Z","qty":1}`,
	`{"id":"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b","type":"cancel","shop":"s","sku":"k","at":"2026-11-26T20:00:00Z","order_id":"ks-1","qty":1,"refund_id":"rf-1"}`,
	`{"id":"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b","type":"shipment","shop":"s","sku":"k","at":"2026-11-26T20:00:00Z","order_id":"ks-1","qty":1,"waybill":"SF1001"}`,
	`{"id":"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b","type":"return","shop":"s","sku":"k","at":"2026-11-26T20:00:00Z","order_id":"ks-1","qty":2,"return_id":"RT-1","restocked":1}`,
	`{"id":"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b","type":"promise_changed","shop":"s","sku":"k","at":"2026-11-26T20:00:00Z","order_id":"ks-1","ship_by":"2026-11-29T20:00:00-05:00"}`,
	`{"id":"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b","type":"recount","shop":"s","sku":"k","at":"2026-11-26T20:00:00Z","counted":7,"counted_by":"warehouse a"}`,
	`{"id":"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b","type":"capacity_confirmed","shop":"s","sku":"k","at":"2026-11-26T20:00:00Z","supplier":"factory a","qty":100,"deliver_by":"2026-12-06T20:00:00Z"}`,
	// Names: case, escapes, runes that fold onto ASCII, unknown, empty.
	`{"TYPE":"sale","Shop":"s","s\u006bu":"k","q\u0074y":1}`,
	"{\"s\u212au\":\"k\",\"\u017fhop\":\"s\"}",
	`{"qty":1,"QTY":2}`, `{"qty":1,"qty":2}`, `{"colour":"red"}`, `{"":1}`, `{"a\"":1}`, `{"x":1,"x":2}`,
	`{"type":"sale","sku_name":"x","qty":"1"}`, `{"qty":"1","sku_name":"x"}`,
	// Types and numbers.
	`{"qty":1.5}`, `{"qty":1e3}`, `{"qty":-0}`, `{"qty":9223372036854775807}`, `{"qty":9223372036854775808}`,
	`{"qty":-9223372036854775808}`, `{"qty":-9223372036854775809}`, `{"qty":true}`, `{"qty":null}`, `{"qty":{}}`, `{"qty":[]}`,
	`{"shop":7}`, `{"shop":null}`, `{"shop":false}`, `{"shop":{"a":1}}`, `{"type":["sale"]}`, `{"price_fen":"9"}`,
	`{"ship_within_hours":1e2}`, `{"stock":null,"qty":0}`,
	// Times.
	`{"at":"yesterday"}`, `{"at":5}`, `{"at":null}`, `{"at":{}}`, `{"ship_by":"x","at":"y"}`, `{"deliver_by":20261126}`,
	`{"at":"2026-11-26T20:00:00Z"} x`, `{"at":"bad"} x`, `{"at":5} x`, `{"at":"2026\u002d11-26T20:00:00Z"}`,
	`{"at":"2026-11-26T20:00:00+24:00"}`, `{"ship_by":null,"deliver_by":null}`, `{"AT":"bad","colour":1}`,
	// Strings: escapes, surrogates, control characters, UTF-8.
	`{"title":"a\u00e9\n\"\\\/\b\f\r\t"}`, `{"title":"\ud83d\ude00"}`, `{"title":"\ud800"}`, `{"title":"\udc00x"}`,
	`{"title":"\ud800\u0041"}`, "{\"title\":\"a\x01\"}", "{\"title\":\"a\xff\"}", "{\"ti\xfftle\":1}", `{"title":"\x"}`,
	`{"title":"\u12"}`, `{"title":"\u12g4"}`, "{\"counted_by\":\"a\xff\xfe\"}",
	// Syntax.
	``, ` `, `{`, `{"a"`, `{"a":`, `{"a":1`, `{"a":1,`, `{"a":1,}`, `{,}`, `{"a" 1}`, `{"a":1 "b":2}`, `{"type":"sale",,}`,
	`{"a":tru}`, `{"a":fals}`, `{"a":nul}`, `{"a":tx}`, `{"a":-}`, `{"a":-x}`, `{"a":01}`, `{"a":1.}`, `{"a":1.x}`, `{"a":1e}`,
	`{"a":1e+}`, `{"a":1ex}`, `{"a":[1,]}`, `{"a":[1 2]}`, `{"a":{"b"}}`, `{"a":1,"a":tru}`, `{"a":tru,"a":1}`,
	`"sale"`, `5`, `true`, `null`, `null x`, `truex`, `1x`, `-`, `{}`, `{} {}`, `{}x`, ` {"qty":1} `, `}`, `]`, `x`,
	// Depth.
	`{"qty":[[[[1]]]]}`, `{"qty":[[[1]]]}`, `{"t":{"a":{"b":{"c":1}}}}`, `{"qty":` + strings.Repeat("[", 3000) + strings.Repeat("]", 3000) + `}`,
	// Batches.
	`[]`, `[`, `[ `, `[}`, `[1]`, `[1,]`, `[,1]`, `[{}]`, `[{} {}]`, `[{}x]`, `[{},]`, `[{}}`, `[{}] x`, `[{}]]`, `[null]`,
	`[{"qty":1},{"qty":1,"qty":2}]`, `[{"qty":1},{"qty":1,"qty":2,}]`, `[{"a":1}, {"b":tru}]`, ` [ {"qty":"x"} , 5 ]`,
	`[truex]`, `[1x]`, `["a"]`, `[[1]]`, `[{"at":"bad"}]`, `[{"at":"bad"} ]`, `[{"at":5},{"qty":1}]`, "\n[\t{\"qty\":1}\r]",
	`[` + strings.Repeat("[", 10001) + `]`,
	// Bounds: an event of more than MaxEventBytes, alone and in a batch; a
	// batch of MaxBatch events and one more.
	`{"title":"` + strings.Repeat("x", MaxEventBytes) + `"}`, `[{"qty":1}, {"title":"` + strings.Repeat("x", MaxEventBytes) + `"}]`,
	`[` + strings.Repeat("null,", MaxBatch-1) + `null]`, `[` + strings.Repeat("null,", MaxBatch) + `null]`,
}

// FuzzDecodeSame holds the decoder to the one it replaced (reference_test.go):
// for any bytes, DecodeEvent and DecodeEvents return the same events, or
// errors of the same text naming the same fields; Validate and
// ValidateStored of what decodes say the same as before.
func FuzzDecodeSame(f *testing.F) {
	for _, s := range sameSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want, wantErr := refDecodeEvent(data)
		got, gotErr := DecodeEvent(data)
		checkSame(t, "DecodeEvent", data, []Event{want}, wantErr, []Event{got}, gotErr)
		wantAll, wantErr := refDecodeEvents(data)
		gotAll, gotErr := DecodeEvents(data)
		checkSame(t, "DecodeEvents", data, wantAll, wantErr, gotAll, gotErr)
		if gotErr != nil {
			return
		}
		for i := range gotAll {
			e := &gotAll[i]
			checkSameErr(t, "Validate", data, refValidate(e, 0, strictIDs), e.Validate())
			checkSameErr(t, "ValidateStored", data, refValidate(e, 0, legacyIDs), e.ValidateStored())
		}
		var wantBatch []error
		for i := range gotAll {
			wantBatch = append(wantBatch, refValidate(&gotAll[i], i, strictIDs))
		}
		checkSameErr(t, "ValidateBatch", data, errors.Join(wantBatch...), ValidateBatch(gotAll))
	})
}

func checkSame(t *testing.T, what string, data []byte, want []Event, wantErr error, got []Event, gotErr error) {
	t.Helper()
	checkSameErr(t, what, data, wantErr, gotErr)
	if wantErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%s(%q):\n got %+v\nwant %+v", what, data, got, want)
	}
}

func checkSameErr(t *testing.T, what string, data []byte, want, got error) {
	t.Helper()
	if (want == nil) != (got == nil) || want != nil && want.Error() != got.Error() {
		t.Fatalf("%s(%q):\n got error %v\nwant error %v", what, data, got, want)
	}
	if g, w := fieldErrorList(got), fieldErrorList(want); g != w {
		t.Fatalf("%s(%q): field errors\n got %s\nwant %s", what, data, g, w)
	}
}

// fieldErrorList shows every part of each FieldError of err.
func fieldErrorList(err error) string {
	var b strings.Builder
	for _, fe := range FieldErrors(err) {
		fmt.Fprintf(&b, "[%d %q %q %q]", fe.Index, fe.Field, fe.Value, fe.Rule)
	}
	return b.String()
}

// TestEventFieldsMatchStruct: the decoder's members are Event's json tags,
// in order, each stored as its Go type asks.
func TestEventFieldsMatchStruct(t *testing.T) {
	typ := reflect.TypeFor[Event]()
	if typ.NumField() != numFields {
		t.Fatalf("Event has %d fields, the decoder knows %d", typ.NumField(), numFields)
	}
	kinds := map[string]fieldKind{"string": fieldString, "ledger.Type": fieldString, "ledger.SalesForm": fieldString,
		"int64": fieldInt, "int": fieldInt, "*int64": fieldIntPtr, "time.Time": fieldTime, "*time.Time": fieldTimePtr}
	for i := range numFields {
		sf := typ.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if got := eventFields[i]; got.name != name || got.kind != kinds[sf.Type.String()] {
			t.Errorf("member %d = %+v, want %s stored as %s", i, got, name, sf.Type)
		}
		var folded [foldedKeyMax]byte
		key, ok := foldKeyInto(&folded, []byte(`"`+strings.ToUpper(name)+`"`), false, false)
		if !ok || fieldByName(key) != i {
			t.Errorf("the key %q does not name member %d", strings.ToUpper(name), i)
		}
	}
}

// TestDecodeAllocations: decoding and validating a valid event allocates
// the text of its strings and, when it has optional numbers or times, one
// box for them; nothing per field.
func TestDecodeAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	for i, want := range map[int]float64{0: 2, 2: 1, 6: 2, 9: 2} { // listing, delisting, sale, return
		data := []byte(sameSeeds[i])
		got := testing.AllocsPerRun(100, func() {
			e, err := DecodeEvent(data)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Validate(); err != nil {
				t.Fatal(err)
			}
		})
		if got != want {
			t.Errorf("decode and validate %s: %v allocations, want %v", data, got, want)
		}
	}
}
