package ledger

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

// jsontextDecoder is the decoder as JSON v2 would have it: the jsontext
// tokenizer checks syntax, UTF-8 and duplicate names (exact case) and
// hands over each raw value; members are matched and stored as
// DecodeEvent does. It covers only what the benchmark needs (a valid
// event; anything else reports false): it was measured against the
// hand-written reader (BenchmarkDecoders) and lost, see BENCHMARKS.md.
type jsontextDecoder struct {
	in  bytes.Reader
	dec *jsontext.Decoder
}

func newJSONTextDecoder() *jsontextDecoder {
	j := &jsontextDecoder{}
	j.dec = jsontext.NewDecoder(&j.in)
	return j
}

func (j *jsontextDecoder) decode(data []byte) (Event, bool) {
	j.in.Reset(data)
	j.dec.Reset(&j.in)
	if tok, err := j.dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return Event{}, false
	}
	var d eventDecoder
	for j.dec.PeekKind() != '}' {
		name, err := j.dec.ReadValue()
		if err != nil {
			return Event{}, false
		}
		var tmp [foldedKeyMax]byte
		folded, ok := foldKeyInto(&tmp, name, bytes.IndexByte(name, '\\') >= 0, false)
		f := -1
		if ok {
			f = fieldByName(folded)
		}
		value, err := j.dec.ReadValue()
		if err != nil || f < 0 || d.seen&(1<<f) != 0 {
			return Event{}, false
		}
		d.seen |= 1 << f
		// value lives in the tokenizer's buffer until the next read: keep
		// the same bytes of data instead.
		end := int(j.dec.InputOffset())
		raw := data[end-len(value) : end]
		d.r.esc = bytes.IndexByte(raw, '\\') >= 0
		d.store(f, jsontextKind(value.Kind()), raw)
	}
	if _, err := j.dec.ReadToken(); err != nil || !d.clean() {
		return Event{}, false
	}
	return d.finish(), true
}

func jsontextKind(k jsontext.Kind) valueKind {
	switch k {
	case '"':
		return kindString
	case '0':
		return kindNumber
	case 't', 'f':
		return kindBool
	case '{':
		return kindObject
	case '[':
		return kindArray
	}
	return kindNull
}

// BenchmarkDecoders decodes and validates the events of every type with
// the hand-written reader (DecodeEvent) and with the jsontext tokenizer,
// one decoder reused as a projector's reader goroutine would.
func BenchmarkDecoders(b *testing.B) {
	events := map[string][]byte{
		"sale":    []byte(`{"id":"0b7f6a0e-3c1e-4c55-8a3f-6d0e2f7a1b83","type":"sale","shop":"shop-1","sku":"sku-0042","at":"2026-11-30T05:00:00.123456Z","order_id":"order-12345678","unit_price_fen":9900,"live_id":"live-1","qty":1}`),
		"listing": []byte(`{"id":"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b","type":"listing","shop":"shop-demo","sku":"sku_1-A","at":"2026-11-26T20:00:00Z","title":"Velvet lipstick, red","price_fen":9900,"sales_form":"spot","ship_within_hours":48,"stock":10}`),
		"return":  []byte(`{"id":"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b","type":"return","shop":"s","sku":"k","at":"2026-11-26T20:00:00Z","order_id":"ks-1","qty":2,"return_id":"RT-1","restocked":1}`),
	}
	for _, name := range []string{"sale", "listing", "return"} {
		data := events[name]
		b.Run("handwritten/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e, err := DecodeEvent(data)
				if err != nil {
					b.Fatal(err)
				}
				if err := e.Validate(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("jsontext/"+name, func(b *testing.B) {
			j := newJSONTextDecoder()
			want, _ := DecodeEvent(data)
			if got, ok := j.decode(data); !ok || !reflect.DeepEqual(got, want) {
				b.Fatalf("jsontext decoded %+v, %v; want %+v", got, ok, want)
			}
			b.ReportAllocs()
			for b.Loop() {
				e, ok := j.decode(data)
				if !ok {
					b.Fatal("jsontext refused a valid event")
				}
				if err := e.Validate(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
