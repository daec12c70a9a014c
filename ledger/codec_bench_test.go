package ledger_test

import (
	"testing"
	"time"

	"stockledger/ledger"
)

// BenchmarkDecodeEvent decodes and validates one sale as the projector does
// for every message it reads.
func BenchmarkDecodeEvent(b *testing.B) {
	e := ledger.Event{ID: "0b7f6a0e-3c1e-4c55-8a3f-6d0e2f7a1b83", Type: ledger.Sale, Shop: "shop-1", SKU: "sku-0042",
		OrderID: "order-12345678", Qty: ledger.Int64(1), UnitPriceFen: 9900, LiveID: "live-1", At: time.Now().UTC()}
	data, err := ledger.EncodeEvent(&e)
	if err != nil {
		b.Fatal(err)
	}
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
