package transport_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger/transport"
)

// A dashboard of its own: read every SKU view of one shop from the
// STOCK_VIEWS bucket at once, then follow the changes.
func Example_watchViews() {
	ctx := context.Background()
	nc, err := nats.Connect("nats://127.0.0.1:4222") // ledgerd's LEDGER_NATS_LISTEN
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, transport.ViewBucket)
	if err != nil {
		log.Fatal(err)
	}
	w, err := kv.Watch(ctx, "shop-demo.*") // keys are <shop>.<sku>
	if err != nil {
		log.Fatal(err)
	}
	defer w.Stop()
	for e := range w.Updates() {
		if e == nil {
			fmt.Println("-- current state shown; changes follow")
			continue
		}
		var v struct {
			SKU         string `json:"sku"`
			Listed      int64  `json:"listed"`
			Available   int64  `json:"available"`
			ExposureFen int64  `json:"exposure_fen"`
		}
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s listed=%d available=%d at_risk=%d fen\n", v.SKU, v.Listed, v.Available, v.ExposureFen)
	}
}
