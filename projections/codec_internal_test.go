package projections

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fillState sets every stored field of s (every exported field JSON
// carries) to a value drawn from rng, by reflection, so that a field added
// to SKU later is filled too and a codec that leaves it out fails
// TestStateRoundTrip. Slices and maps get 0 to 3 elements.
func fillState(t *testing.T, rng *rand.Rand, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		v.SetString(randomText(rng))
	case reflect.Int, reflect.Int64:
		v.SetInt(rng.Int64N(1<<40) - 1<<39)
	case reflect.Uint64:
		v.SetUint(rng.Uint64() >> rng.IntN(64))
	case reflect.Bool:
		v.SetBool(rng.IntN(2) == 1)
	case reflect.Array:
		for i := range v.Len() {
			fillState(t, rng, v.Index(i))
		}
	case reflect.Slice:
		if n := rng.IntN(4); n > 0 {
			v.Set(reflect.MakeSlice(v.Type(), n, n))
			for i := range n {
				fillState(t, rng, v.Index(i))
			}
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		for range rng.IntN(4) {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fillState(t, rng, k)
			fillState(t, rng, e)
			v.SetMapIndex(k, e)
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			if rng.IntN(5) > 0 { // the zero time too
				v.Set(reflect.ValueOf(time.Unix(rng.Int64N(1<<34), rng.Int64N(1e9)).UTC()))
			}
			return
		}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if f.IsExported() && f.Tag.Get("json") != "-" {
				fillState(t, rng, v.Field(i))
			}
		}
	default:
		t.Fatalf("fillState: no filler for %s: teach it (and EncodeState) the new field", v.Type())
	}
}

func randomText(rng *rand.Rand) string {
	words := []string{"", "shop-01", "sku-00001", "listed", "презентация", "直播间", "a\x00b", "<&>"}
	return words[rng.IntN(len(words))] + strings.Repeat("x", rng.IntN(3))
}

// TestStateRoundTrip checks that the compact state form keeps every stored
// field: a state decoded from it equals the state encoded, and so does one
// decoded from the JSON form that read models written before it hold.
func TestStateRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		want := &SKU{}
		fillState(t, rng, reflect.ValueOf(want).Elem())
		enc := EncodeState(nil, want)
		got := &SKU{}
		if err := DecodeState(enc, got); err != nil {
			t.Fatalf("state %d: decode: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("state %d: compact form changed it:\n got %+v\nwant %+v", i, got, want)
		}
		doc, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		fromJSON := &SKU{}
		if err := DecodeState(doc, fromJSON); err != nil {
			t.Fatalf("state %d: decode JSON: %v", i, err)
		}
		if again := EncodeState(nil, fromJSON); string(again) != string(enc) {
			t.Fatalf("state %d: the JSON form decodes to another state", i)
		}
	}
}

// TestBookRoundTrip checks the same of a line's book: the compact form
// keeps the promise, the documents and the early events, and the JSON form
// of earlier versions decodes to the same book.
func TestBookRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 2000 {
		want := &Line{OrderID: "o-1", SoldAt: time.Unix(1_800_000_000, 0).UTC()}
		b := lineBook{}
		fillState(t, rng, reflect.ValueOf(&b).Elem())
		want.Promise, want.Docs, want.Early = b.Promise, b.Docs, b.Early
		enc := want.encodeBook(nil)
		got := &Line{OrderID: want.OrderID, SoldAt: want.SoldAt}
		if err := got.decodeBook(enc); err != nil {
			t.Fatalf("book %d: decode: %v", i, err)
		}
		if len(enc) == 0 { // the usual line: its promise is its sale's
			want.Promise = Slot{At: want.SoldAt}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("book %d: compact form changed it:\n got %+v\nwant %+v", i, got, want)
		}
		doc, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		fromJSON := &Line{OrderID: want.OrderID, SoldAt: want.SoldAt}
		if err := fromJSON.decodeBook(doc); err != nil {
			t.Fatalf("book %d: decode JSON: %v", i, err)
		}
		if again := fromJSON.encodeBook(nil); string(again) != string(enc) {
			t.Fatalf("book %d: the JSON form decodes to another book", i)
		}
		for n := 1; n < len(enc); n++ {
			if err := (&Line{}).decodeBook(enc[:n]); err == nil {
				t.Fatalf("book %d cut to %d of %d bytes was accepted", i, n, len(enc))
			}
		}
	}
}

// TestStateCorrupt checks that a damaged state is refused, never read as
// another one and never a panic: every truncation of a state, and states
// with one byte changed.
func TestStateCorrupt(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	s := &SKU{}
	fillState(t, rng, reflect.ValueOf(s).Elem())
	enc := EncodeState(nil, s)
	for n := range len(enc) {
		if err := DecodeState(enc[:n], &SKU{}); err == nil {
			t.Fatalf("a state cut to %d of %d bytes was accepted", n, len(enc))
		}
	}
	if err := DecodeState(append(enc, 0), &SKU{}); err == nil {
		t.Fatal("a state with a byte past its end was accepted")
	}
	for i := range 5000 {
		bad := []byte(string(enc))
		bad[1+rng.IntN(len(bad)-1)] = byte(rng.IntN(256))
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("change %d: decode panicked: %v", i, r)
				}
			}()
			_ = DecodeState(bad, &SKU{})
		}()
	}
	if err := DecodeState([]byte{0x7f}, &SKU{}); err == nil || !strings.Contains(err.Error(), "unknown encoding") {
		t.Fatalf("unknown version: got %v", err)
	}
}

// BenchmarkStateEncode compares the two forms of a SKU state as the fold
// leaves one (a presale SKU with two suppliers, a pace, slots).
func BenchmarkStateEncode(b *testing.B) {
	s := &SKU{}
	if err := json.Unmarshal([]byte(sampleState), s); err != nil {
		b.Fatal(err)
	}
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(s); err != nil {
				b.Fatal(err)
			}
		}
	})
	var buf []byte
	b.Run("compact", func(b *testing.B) {
		for b.Loop() {
			buf = EncodeState(buf[:0], s)
		}
	})
	doc, _ := json.Marshal(s)
	b.Logf("bytes: json %d, compact %d", len(doc), len(EncodeState(nil, s)))
	for _, form := range []struct {
		name string
		data []byte
	}{{"decode-json", doc}, {"decode-compact", EncodeState(nil, s)}} {
		b.Run(form.name, func(b *testing.B) {
			for b.Loop() {
				if err := DecodeState(form.data, &SKU{}); err != nil {
					b.Fatal(fmt.Errorf("%s: %w", form.name, err))
				}
			}
		})
	}
}

// sampleState is the largest state of a ledgerd read model after 160k
// events of feedsim's default feed.
const sampleState = `{"shop":"shop-01","sku":"sku-00001","status":"listed","status_slot":{"at":"2026-11-30T07:58:25Z","ids":["72933d97-e51e-4e06-a6fa-b726f611e28f"]},"title":"item sku-00001","price_fen":8490,"sales_form":"presale","ship_within_hours":0,"ship_within_days":5,"listed":3443,"listed_slot":{"at":"2026-11-30T07:58:25.6725Z","ids":["c538200e-df44-4f37-9e1d-eeef0db0e20c"]},"on_hand":55,"on_hand_set":true,"count_slot":{},"presale_shipped":1596,"capacity":5063,"suppliers":{"factory-1":{"qty":2531,"deliver_by":"2026-12-30T07:58:25.6725Z","seq":17788,"slot":{"at":"2026-11-30T07:58:25.6725Z","ids":["77cb416e-1b8b-4034-b3cd-15feb027818f"]}},"factory-2":{"qty":2532,"deliver_by":"2026-12-30T07:58:25.6725Z","seq":17789,"slot":{"at":"2026-11-30T07:58:25.6725Z","ids":["338410ff-7388-47f5-8dcd-82d85261cb63"]}}},"safety_stock":9,"safety_slot":{"at":"2026-11-30T07:58:29.75Z","ids":["f27fd464-a594-437e-b28f-ca55aa4aed8a"]},"synced":{"pending":true,"listed":3443,"sellable":3434,"seq":161917},"pace":{"buckets":[{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":0,"u":0},{"m":29933758,"u":1759},{"m":0,"u":0}],"latest":"2026-11-30T07:58:32.1665Z"},"live_id":"live-shop-01","clock":"2026-11-30T07:58:45.352506973Z","next_due":"2026-12-05T07:58:31.9241Z","last_seq":162450,"updated_at":"2026-11-30T07:58:32.1665Z"}`
