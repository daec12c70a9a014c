package ledger_test

import (
	"bytes"
	"testing"
	"time"

	"stockledger/ledger"
)

// benchSale is a typical sale as feeds send it: the projector decodes and
// validates one such message per stream message.
func benchSale() ledger.Event {
	return ledger.Event{ID: "0b7f6a0e-3c1e-4c55-8a3f-6d0e2f7a1b83", Type: ledger.Sale, Shop: "shop-1", SKU: "sku-0042",
		OrderID: "order-12345678", Qty: ledger.Int64(1), UnitPriceFen: 9900, LiveID: "live-1", At: time.Now().UTC()}
}

// BenchmarkDecodeEvent decodes and validates one sale as the projector does
// for every message it reads.
func BenchmarkDecodeEvent(b *testing.B) {
	e := benchSale()
	data, err := ledger.EncodeEvent(&e)
	if err != nil {
		b.Fatal(err)
	}
	benchDecode(b, data)
}

// benchDecode decodes and validates data in a loop.
func benchDecode(b *testing.B, data []byte) {
	b.ReportAllocs()
	for b.Loop() {
		d, err := ledger.DecodeEvent(data)
		if err != nil {
			b.Fatal(err)
		}
		if err := d.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEventTypes decodes and validates one event of each type,
// with every field its type takes.
func BenchmarkDecodeEventTypes(b *testing.B) {
	for _, typ := range ledger.Types {
		data, err := ledger.EncodeEvent(ptr(vtValid(typ)))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(string(typ), func(b *testing.B) { benchDecode(b, data) })
	}
}

// BenchmarkDecodeEvents decodes and validates a POST body of 100 sales, as
// the HTTP path does.
func BenchmarkDecodeEvents(b *testing.B) {
	e := benchSale()
	one, err := ledger.EncodeEvent(&e)
	if err != nil {
		b.Fatal(err)
	}
	body := append([]byte("["), bytes.Repeat(append(one, ','), 100)...)
	body[len(body)-1] = ']'
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		events, err := ledger.DecodeEvents(body)
		if err != nil {
			b.Fatal(err)
		}
		if err := ledger.ValidateBatch(events); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeEvent encodes one sale, as the publisher does for every
// event it publishes, and one listing with a title.
func BenchmarkEncodeEvent(b *testing.B) {
	for _, c := range []struct {
		name string
		e    ledger.Event
	}{{"sale", benchSale()}, {"listing", vtValid(ledger.Listing)}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ledger.EncodeEvent(&c.e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
