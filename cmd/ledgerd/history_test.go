package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger/transport"
)

// TestHistoryMarksRefused: GET .../events marks each event the projector
// refused with the reason its dead letter carries; the others carry none.
func TestHistoryMarksRefused(t *testing.T) {
	svc := startTestService(t, "")
	base := "http://" + svc.httpAddr
	seq := postEvents(t, base, map[string]any{"type": "listing", "shop": "shop-d", "sku": "cup", "title": "Cup", "price_fen": 100,
		"stock": 5, "sales_form": "spot", "ship_within_hours": 24})
	nc, err := nats.Connect(svc.ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	poison := []string{
		`{"type":"sale","shop":"shop-d","sku":"cup","order_id":"p1","qty":-5,"unit_price_fen":100}`,
		`not json`,
	}
	var last uint64
	for _, body := range poison {
		ack, err := js.Publish(ctx, transport.EventSubject("shop-d", "cup"), []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		last = ack.Sequence
	}
	if err := svc.projector.WaitApplied(ctx, last); err != nil {
		t.Fatal(err)
	}
	var h struct {
		Events []historyEntry `json:"events"`
	}
	for {
		status, body := doGet(t, base+"/v1/shops/shop-d/skus/cup/events")
		if status != http.StatusOK || json.Unmarshal(body, &h) != nil {
			t.Fatalf("history: %d %s", status, body)
		}
		if len(h.Events) == 3 && h.Events[2].Refused != "" || ctx.Err() != nil {
			break
		}
		waitFor(20 * time.Millisecond)
	}
	if len(h.Events) != 3 || h.Events[0].Seq != seq || h.Events[0].Refused != "" ||
		!strings.Contains(h.Events[1].Refused, "qty") || h.Events[2].Refused == "" {
		t.Errorf("history %+v: want the listing applied, the sale refused naming qty, the text refused", h.Events)
	}
}
