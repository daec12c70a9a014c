package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger/transport"
)

// FuzzPostEvents drives POST /v1/events of a real service (embedded NATS,
// memory read model) with arbitrary bodies: it never panics, answers only
// with the statuses the README lists, names a field in every 400, and a
// refused request appends nothing.
func FuzzPostEvents(f *testing.F) {
	for _, tc := range hostileInputs() {
		f.Add([]byte(tc.body))
	}
	f.Add([]byte(`{"type":"listing","shop":"shop-f","sku":"sku-f","title":"t","price_fen":100,"stock":10,"sales_form":"spot","ship_within_hours":24}`))
	f.Add([]byte(`[{"type":"sale","shop":"shop-f","sku":"sku-f","order_id":"f-1","qty":1,"unit_price_fen":100},{"type":"cancel","shop":"shop-f","sku":"sku-f","order_id":"f-1"}]`))
	f.Add([]byte(`[]`))
	svc := startTestService(f, "")
	handler := svc.http.Handler
	js, err := jetstream.New(svc.nc)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := streamLastSeq(t, js, transport.EventStream)
		req := httptest.NewRequest(http.MethodPost, "/v1/events", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusAccepted:
			var resp postEventsResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || len(resp.Events) == 0 {
				t.Fatalf("202 with %s (err %v), want acks", rec.Body, err)
			}
			for _, a := range resp.Events {
				// A re-sent order is acknowledged with its first copy's seq.
				if a.Seq == 0 || (a.Seq <= before && !a.Duplicate) {
					t.Fatalf("202 with ack %+v: a new event must be stored past seq %d", a, before)
				}
			}
			return
		case http.StatusBadRequest, http.StatusConflict, http.StatusRequestEntityTooLarge:
			var p problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || len(p.Errors) == 0 {
				t.Fatalf("%d without named fields: %s", rec.Code, rec.Body)
			}
			for _, fe := range p.Errors {
				if fe.Field == "" || fe.Rule == "" {
					t.Fatalf("%d with an error naming no field or rule: %s", rec.Code, rec.Body)
				}
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if rec.Code != http.StatusConflict {
			if after := streamLastSeq(t, js, transport.EventStream); after != before {
				t.Fatalf("refused with %d but the stream went from seq %d to %d", rec.Code, before, after)
			}
		}
	})
}
