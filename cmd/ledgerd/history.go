package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"stockledger/ledger/transport"
	"stockledger/projections"
)

// History read bounds.
const (
	// historyDefault is how many events one history read returns without
	// a limit; more come with next_after_seq.
	historyDefault = 1000
	// historyMax bounds the limit of one history read; a larger one is
	// refused with 400.
	historyMax = 10000
)

// historyAPI serves what is read from the event stream itself: a SKU's
// history, and its view at a past moment folded from that history.
type historyAPI struct {
	log      *slog.Logger
	history  history
	progress progress
	wait     *readWait
}

// historyEntry is one stored message of a SKU's subject, as stored.
type historyEntry struct {
	Seq      uint64          `json:"seq"`
	StoredAt time.Time       `json:"stored_at"`
	Event    json.RawMessage `json:"event"`
	// Refused is why the projector refused the event (it changed nothing
	// and was dead-lettered); empty for an event it applied.
	Refused string `json:"refused,omitempty"`
}

// historyQuery reads limit and after_seq of a history read.
func historyQuery(r *http.Request) (limit int, after uint64, err error) {
	q := r.URL.Query()
	limit = historyDefault
	if raw := q.Get("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > historyMax {
			return 0, 0, badParam("limit", raw, fmt.Sprintf("must be from 1 to %d", historyMax))
		}
		limit = n
	}
	if raw := q.Get("after_seq"); raw != "" {
		n, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			return 0, 0, badParam("after_seq", raw, "must be a whole number")
		}
		after = n
	}
	return limit, after, nil
}

// events serves GET /v1/shops/{shop}/skus/{sku}/events: the SKU's events
// from the stream, each the projector refused marked with the reason.
func (h *historyAPI) events(w http.ResponseWriter, r *http.Request) error {
	if err := checkNames(r, "shop", "sku"); err != nil {
		return err
	}
	limit, after, err := historyQuery(r)
	if err != nil {
		return err
	}
	if err := h.wait.await(r, false); err != nil {
		return err
	}
	ctx, shop, sku := r.Context(), r.PathValue("shop"), r.PathValue("sku")
	msgs, more, err := h.history.Read(ctx, shop, sku, after, limit)
	if err != nil {
		return historyError(shop, sku, "read history", err)
	}
	refused, err := h.history.Refusals(ctx, shop, sku)
	if err != nil {
		return fmt.Errorf("read refusals: %w", err)
	}
	entries := make([]historyEntry, len(msgs))
	for i, m := range msgs {
		entries[i] = historyEntry{Seq: m.Seq, StoredAt: m.StoredAt, Event: rawJSON(m.Data), Refused: refused[m.Seq]}
	}
	resp := map[string]any{"shop": shop, "sku": sku, "events": entries}
	if more {
		resp["next_after_seq"] = entries[len(entries)-1].Seq
	}
	writeJSON(w, h.log, http.StatusOK, h.progress.Applied(), resp)
	return nil
}

// historyError names the SKU of a read that found no event of it (404),
// and what was being done otherwise.
func historyError(shop, sku, doing string, err error) error {
	if errors.Is(err, transport.ErrNoEvents) {
		return noSKU(shop, sku, err)
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// rawJSON passes valid JSON through and quotes anything else (a poison
// message stored by a raw publisher) as a JSON string.
func rawJSON(b []byte) json.RawMessage {
	if json.Valid(b) {
		return b
	}
	q, _ := json.Marshal(string(b))
	return q
}

// asOfView is the answer of GET /v1/shops/{shop}/skus/{sku}?as_of=T.
type asOfView struct {
	AsOf time.Time `json:"as_of"`
	projections.View
}

// asOf answers a SKU's view at a past moment, folded from its history in
// the stream (see consumers.FoldAsOf). The caller checked the names and
// waited (readAPI.sku).
func (h *historyAPI) asOf(w http.ResponseWriter, r *http.Request) error {
	shop, sku := r.PathValue("shop"), r.PathValue("sku")
	raw := r.URL.Query().Get("as_of")
	t, err := time.Parse(time.RFC3339, raw)
	if err != nil {
		return badParam("as_of", raw, "must be an RFC 3339 time")
	}
	s, err := h.history.AsOf(r.Context(), shop, sku, t)
	if err != nil {
		return err
	}
	if s == nil {
		return &httpError{status: http.StatusNotFound,
			detail: fmt.Sprintf("no event of sku %s of shop %s happened by %s", sku, shop, t.UTC().Format(time.RFC3339))}
	}
	writeJSON(w, h.log, http.StatusOK, h.progress.Applied(), asOfView{AsOf: t.UTC(), View: s.View()})
	return nil
}
