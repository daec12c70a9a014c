package main

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"stockledger/projections"
)

// shopAnswer is GET /v1/shops/{shop}: the shop's totals, its open
// fulfilment_risk alert (null when none), and the applied sequence they
// reflect.
type shopAnswer struct {
	projections.ShopHealth
	FulfilmentRisk *projections.Alert `json:"fulfilment_risk"`
	AppliedSeq     uint64             `json:"applied_seq"`
	// At is the time the lines due within 24 hours were counted against.
	At time.Time `json:"at"`
}

// shop serves GET /v1/shops/{shop}: the shop's health, its lines due counted
// against the clock of the read.
func (h *readAPI) shop(w http.ResponseWriter, r *http.Request) error {
	if err := checkNames(r, "shop"); err != nil {
		return err
	}
	if err := h.wait.await(r, true); err != nil {
		return err
	}
	shop, now := r.PathValue("shop"), time.Now().UTC()
	sh, applied, err := h.model.ShopHealth(r.Context(), shop, now)
	if errors.Is(err, projections.ErrNotFound) {
		return &httpError{status: http.StatusNotFound, detail: fmt.Sprintf("no event has named shop %s", shop), cause: err}
	}
	if err != nil {
		return readModelError(err)
	}
	alerts, _, err := h.model.Alerts(r.Context(), projections.AlertFilter{Shop: shop, State: projections.AlertOpen})
	if err != nil {
		return readModelError(err)
	}
	ans := shopAnswer{ShopHealth: sh, AppliedSeq: applied, At: now}
	for i := range alerts {
		if alerts[i].Kind == projections.FulfilmentRisk {
			ans.FulfilmentRisk = &alerts[i]
		}
	}
	writeJSON(w, h.log, http.StatusOK, applied, ans)
	return nil
}

// sync serves GET /v1/shops/{shop}/sync: the shop's SKUs whose listed and
// sellable differ, each with the instruction its state calls for (the one
// the projector published on stock.sync.<shop>.<sku>), for adapters that
// poll over HTTP. Its applied_seq is read before the store read.
func (h *readAPI) sync(w http.ResponseWriter, r *http.Request) error {
	shop, views, applied, err := h.shopViews(r)
	if err != nil {
		return err
	}
	out := []syncEntry{}
	for i := range views {
		if in, ok := projections.InstructionOf(&views[i]); ok {
			out = append(out, syncEntry{SKU: views[i].SKU, Status: views[i].Status, Instruction: in})
		}
	}
	writeJSON(w, h.log, http.StatusOK, applied, map[string]any{"shop": shop, "skus": out, "applied_seq": applied})
	return nil
}

// syncEntry is one SKU of GET /v1/shops/{shop}/sync.
type syncEntry struct {
	SKU         string                      `json:"sku"`
	Status      projections.Status          `json:"status"`
	Instruction projections.SyncInstruction `json:"instruction"`
}
