package ledger_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"stockledger/ledger"
)

// TestDecodeRefusesWhatEncodingJSONAccepts covers input encoding/json takes
// silently: duplicate keys (it keeps the last), keys differing only in case
// (it matches them to one field), invalid UTF-8 (it substitutes U+FFFD) and
// deep nesting.
func TestDecodeRefusesWhatEncodingJSONAccepts(t *testing.T) {
	const sale = `"type":"sale","shop":"s","sku":"k","order_id":"o-1","unit_price_fen":100`
	cases := []struct {
		name, body, field, rule string
	}{
		{"duplicate qty", `{` + sale + `,"qty":1,"qty":-5}`, "qty", "given twice"},
		{"duplicate shop", `{` + sale + `,"qty":1,"shop":"other"}`, "shop", "given twice"},
		{"duplicate by case", `{` + sale + `,"qty":1,"QTY":1000}`, "qty", "case-insensitively"},
		{"duplicate by escape", `{` + sale + `,"qty":1,"q\u0074y":1000}`, "qty", "given twice"},
		{"duplicate by Kelvin sign", `{` + sale + `,"qty":1,"s\u212Au":"x"}`, "sku", "given twice"},
		{"invalid UTF-8 in a value", `{"type":"recount","shop":"s","sku":"k","counted":1,"counted_by":"a` + "\xff\xfe" + `"}`, "counted_by", "UTF-8"},
		{"invalid UTF-8 in a key", `{"type":"recount","shop":"s","sku":"k","counted":1,"co` + "\xff" + `":1}`, "body", "UTF-8"},
		{"deep array", `{` + sale + `,"qty":` + strings.Repeat("[", 3000) + strings.Repeat("]", 3000) + `}`, "qty", "nested"},
		{"deep object", `{` + sale + `,"qty":1,"title":` + strings.Repeat(`{"a":`, 50) + "1" + strings.Repeat("}", 50) + `}`, "title", "nested"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ledger.DecodeEvent([]byte(tc.body))
			fes := ledger.FieldErrors(err)
			if len(fes) == 0 {
				t.Fatalf("DecodeEvent accepted it (err %v)", err)
			}
			if fes[0].Field != tc.field || !strings.Contains(fes[0].Rule, tc.rule) {
				t.Errorf("error = field %q rule %q, want field %q and a rule saying %q", fes[0].Field, fes[0].Rule, tc.field, tc.rule)
			}
			// The same through a batch names the event's index.
			_, err = ledger.DecodeEvents([]byte(`[{` + sale + `,"qty":1},` + tc.body + `]`))
			if fes := ledger.FieldErrors(err); len(fes) == 0 || fes[0].Index != 1 || fes[0].Field != tc.field {
				t.Errorf("in a batch: %v, want event 1 field %s", err, tc.field)
			}
		})
	}
}

// FuzzDecodeValidate: decoding and validating never panics; whatever decodes
// and validates is valid UTF-8 without repeated keys, and round-trips
// through EncodeEvent to the same event.
func FuzzDecodeValidate(f *testing.F) {
	for _, typ := range ledger.Types {
		data, err := ledger.EncodeEvent(ptr(vtValid(typ)))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"type":"sale","shop":"s","sku":"k","order_id":"o","qty":1,"qty":2,"unit_price_fen":1}`))
	f.Add([]byte(`[{"type":"restock","shop":"s","sku":"k","qty":1}]`))
	f.Add([]byte(`{"type":"recount","shop":"s","sku":"k","counted":1e400}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		events, err := ledger.DecodeEvents(data)
		if err != nil {
			if len(ledger.FieldErrors(err)) == 0 {
				t.Fatalf("decode error names no field: %v", err)
			}
			return
		}
		if err := ledger.ValidateBatch(events); err != nil {
			for _, fe := range ledger.FieldErrors(err) {
				if fe.Field == "" || fe.Rule == "" {
					t.Fatalf("validation error without field or rule: %+v", fe)
				}
			}
			return
		}
		if !json.Valid(data) || !bytes.Equal(bytes.ToValidUTF8(data, nil), data) {
			t.Fatalf("accepted invalid JSON or UTF-8: %q", data)
		}
		for i := range events {
			enc, err := ledger.EncodeEvent(&events[i])
			if err != nil {
				t.Fatal(err)
			}
			back, err := ledger.DecodeEvent(enc)
			if err != nil {
				t.Fatalf("re-decode %s: %v", enc, err)
			}
			if err := back.Validate(); err != nil {
				t.Fatalf("re-validate %s: %v", enc, err)
			}
			again, _ := ledger.EncodeEvent(&back)
			if !bytes.Equal(enc, again) || !reflect.DeepEqual(normalizeTimes(events[i]), normalizeTimes(back)) {
				t.Fatalf("round trip changed the event:\n%s\n%s", enc, again)
			}
		}
	})
}

func ptr[T any](v T) *T { return &v }

// normalizeTimes drops time zone and monotonic details that JSON does not
// keep exactly, so DeepEqual compares instants.
func normalizeTimes(e ledger.Event) ledger.Event {
	e.At = e.At.UTC()
	if e.DeliverBy != nil {
		d := e.DeliverBy.UTC()
		e.DeliverBy = &d
	}
	return e
}
