package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"stockledger/projections"
)

// readAPI serves the reads of the read model: a shop's SKUs, one SKU, its
// alerts. Each waits for the start gate and honours min_seq (readWait),
// then answers with headerApplied read before the store read, so that
// every event at or below the header is reflected in the answer.
type readAPI struct {
	log   *slog.Logger
	model model
	wait  *readWait
	// history answers the as_of reads of one SKU.
	history *historyAPI
}

// readModelError says which part failed: the answer is 503 (problemOf).
func readModelError(err error) error { return fmt.Errorf("read model: %w", err) }

// skus serves GET /v1/shops/{shop}/skus. Its applied_seq and
// Ledger-Applied-Seq are one sequence, read before the store read: every
// event at or below it is reflected in the list (see headerApplied).
func (h *readAPI) skus(w http.ResponseWriter, r *http.Request) error {
	shop, views, applied, err := h.shopViews(r)
	if err != nil {
		return err
	}
	writeJSON(w, h.log, http.StatusOK, applied, map[string]any{"shop": shop, "skus": views, "applied_seq": applied})
	return nil
}

// shopViews reads the views of the request's shop, after the shop name is
// checked and min_seq waited for; applied is read before the views.
func (h *readAPI) shopViews(r *http.Request) (shop string, views []projections.View, applied uint64, err error) {
	if err := checkNames(r, "shop"); err != nil {
		return "", nil, 0, err
	}
	if err := h.wait.await(r, true); err != nil {
		return "", nil, 0, err
	}
	shop = r.PathValue("shop")
	views, applied, err = h.model.SKUs(r.Context(), shop)
	if err != nil {
		return "", nil, 0, readModelError(err)
	}
	return shop, views, applied, nil
}

// sku serves GET /v1/shops/{shop}/skus/{sku}: the SKU's view, or with
// as_of its view at a past moment (historyAPI.asOf). Ledger-Applied-Seq is
// read before the store read: every event at or below it is reflected in
// the view, whose last_seq may be above it (see headerApplied).
func (h *readAPI) sku(w http.ResponseWriter, r *http.Request) error {
	if err := checkNames(r, "shop", "sku"); err != nil {
		return err
	}
	if err := h.wait.await(r, true); err != nil {
		return err
	}
	if r.URL.Query().Has("as_of") {
		return h.history.asOf(w, r)
	}
	shop, sku := r.PathValue("shop"), r.PathValue("sku")
	v, applied, err := h.model.SKU(r.Context(), shop, sku)
	if errors.Is(err, projections.ErrNotFound) {
		return noSKU(shop, sku, err)
	}
	if err != nil {
		return readModelError(err)
	}
	writeJSON(w, h.log, http.StatusOK, applied, v)
	return nil
}

// alertState maps the state query parameter of an alert read to its
// filter: "" is open, "all" no filter.
func alertState(raw string) (projections.AlertState, error) {
	switch raw {
	case "", "open":
		return projections.AlertOpen, nil
	case "resolved":
		return projections.AlertResolved, nil
	case "all":
		return "", nil
	}
	return "", badParam("state", raw, "must be open, resolved or all")
}

// alerts serves GET /v1/shops/{shop}/alerts?state=open|resolved|all, with
// applied_seq and Ledger-Applied-Seq as skus has them.
func (h *readAPI) alerts(w http.ResponseWriter, r *http.Request) error {
	if err := checkNames(r, "shop"); err != nil {
		return err
	}
	state, err := alertState(r.URL.Query().Get("state"))
	if err != nil {
		return err
	}
	if err := h.wait.await(r, true); err != nil {
		return err
	}
	f := projections.AlertFilter{Shop: r.PathValue("shop"), State: state}
	alerts, applied, err := h.model.Alerts(r.Context(), f)
	if err != nil {
		return readModelError(err)
	}
	writeJSON(w, h.log, http.StatusOK, applied, map[string]any{"shop": f.Shop, "alerts": alerts, "applied_seq": applied})
	return nil
}
