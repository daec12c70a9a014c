package main

import (
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"time"

	"stockledger/consumers"
	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// dashboardHTML is the live dashboard: one file, no build step.
//
//go:embed web/index.html
var dashboardHTML []byte

// serveDashboard serves the live dashboard page at /.
func serveDashboard(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(dashboardHTML)
}

// asOfView is the answer of GET /v1/shops/{shop}/skus/{sku}?as_of=T.
type asOfView struct {
	AsOf time.Time `json:"as_of"`
	projections.View
}

// getSKUAsOf answers a SKU's view at a past moment, folded from its history
// in the stream (see consumers.FoldAsOf).
func (a *api) getSKUAsOf(w http.ResponseWriter, r *http.Request) {
	shop, sku := r.PathValue("shop"), r.PathValue("sku")
	raw := r.URL.Query().Get("as_of")
	t, err := time.Parse(time.RFC3339, raw)
	if err != nil {
		writeProblem(w, problem{Status: http.StatusBadRequest, Detail: fmt.Sprintf("as_of %q: must be an RFC 3339 time", raw),
			Errors: []*ledger.FieldError{{Field: "as_of", Value: raw, Rule: "must be an RFC 3339 time"}}})
		return
	}
	s, err := consumers.FoldAsOf(r.Context(), a.history, shop, sku, t, a.fold)
	switch {
	case errors.Is(err, transport.ErrHistoryTooLong):
		writeProblem(w, problem{Status: http.StatusUnprocessableEntity, Detail: err.Error()})
		return
	case err != nil:
		writeProblem(w, problem{Status: http.StatusServiceUnavailable, Detail: err.Error()})
		return
	case s == nil:
		writeProblem(w, problem{Status: http.StatusNotFound, Detail: fmt.Sprintf("no event of sku %s of shop %s happened by %s", sku, shop, t.UTC().Format(time.RFC3339))})
		return
	}
	a.writeJSON(w, http.StatusOK, asOfView{AsOf: t.UTC(), View: s.View()})
}
