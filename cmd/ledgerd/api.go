package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// HTTP bounds.
const (
	// maxBodyBytes bounds a POST body: MaxBatch events of a few hundred bytes.
	maxBodyBytes = 2 << 20
	// appendTimeout bounds publishing one request's events.
	appendTimeout = 15 * time.Second
	// minSeqWaitMax bounds the read-your-writes wait of min_seq.
	minSeqWaitMax = 5 * time.Second
	// historyDefault and historyMax bound the events one history read returns.
	historyDefault = 1000
	historyMax     = 10000
)

type api struct {
	log        *slog.Logger
	pub        *transport.Publisher
	js         jetstream.JetStream
	history    *transport.History
	nc         *nats.Conn
	store      projections.Store
	projector  projection
	durability string

	// kv is the view bucket the live feed watches; fold the configuration
	// of as_of reads; metrics nil in tests that do not need them.
	kv          jetstream.KeyValue
	fold        projections.FoldConfig
	metrics     *metrics
	liveClients atomic.Int64
	// liveMax and liveBuffer override liveClientsMax and liveBufferMax
	// when above zero (tests).
	liveMax, liveBuffer atomic.Int64
	// liveStop is closed at shutdown to end the live feeds.
	liveStop chan struct{}
}

func (a *api) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/events", a.postEvents)
	mux.HandleFunc("GET /v1/shops/{shop}/skus", a.getSKUs)
	mux.HandleFunc("GET /v1/shops/{shop}/skus/{sku}", a.getSKU)
	mux.HandleFunc("GET /v1/shops/{shop}/skus/{sku}/events", a.getHistory)
	mux.HandleFunc("GET /v1/shops/{shop}/alerts", a.getAlerts)
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /v1/shops/{shop}/live", a.getLive)
	mux.HandleFunc("GET /{$}", serveDashboard)
	if a.metrics == nil {
		return mux
	}
	mux.Handle("GET /metrics", a.metrics.handler())
	return a.metrics.instrument(mux)
}

// problem is an RFC 9457 problem detail. Errors lists each field at fault.
type problem struct {
	Type     string               `json:"type"`
	Title    string               `json:"title"`
	Status   int                  `json:"status"`
	Detail   string               `json:"detail,omitempty"`
	Errors   []*ledger.FieldError `json:"errors,omitempty"`
	Appended []transport.Ack      `json:"appended,omitempty"`
}

func writeProblem(w http.ResponseWriter, p problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func (a *api) writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Ledger-Applied-Seq", strconv.FormatUint(a.projector.Applied(), 10))
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		a.log.Debug("write response", "err", err)
	}
}

// postEventsResponse answers POST /v1/events.
type postEventsResponse struct {
	Events []transport.Ack `json:"events"`
	// LastSeq is the highest sequence of the request: pass it as min_seq to
	// read your writes.
	LastSeq uint64 `json:"last_seq"`
}

func (a *api) postEvents(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeProblem(w, problem{Status: http.StatusRequestEntityTooLarge, Detail: fmt.Sprintf("body: a request holds at most %d bytes", maxBodyBytes),
				Errors: []*ledger.FieldError{{Field: "body", Rule: fmt.Sprintf("at most %d bytes", maxBodyBytes)}}})
			return
		}
		writeProblem(w, problem{Status: http.StatusBadRequest, Detail: "read body: " + err.Error()})
		return
	}
	events, err := ledger.DecodeEvents(body)
	if err != nil {
		writeInvalid(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), appendTimeout)
	defer cancel()
	acks, err := a.pub.Append(ctx, a.projector, events)
	var rule *ledger.RuleError
	switch {
	case errors.Is(err, ledger.ErrInvalidEvent):
		writeInvalid(w, err)
		return
	case errors.As(err, &rule):
		writeProblem(w, problem{Status: http.StatusConflict, Title: "Rule broken", Detail: rule.Error(),
			Errors:   []*ledger.FieldError{{Index: rule.Index, Field: rule.Field, Value: rule.Value, Rule: rule.Rule}},
			Appended: acks})
		return
	case err != nil:
		a.log.Warn("append failed", "events", len(events), "err", err)
		writeProblem(w, problem{Status: http.StatusServiceUnavailable, Detail: "append: " + err.Error() + " (re-sending the same events is safe: they are deduplicated)", Appended: acks})
		return
	}
	if a.metrics != nil {
		for i, ack := range acks {
			if !ack.Duplicate && i < len(events) {
				a.metrics.appended.WithLabelValues(string(events[i].Type)).Inc()
			}
		}
	}
	resp := postEventsResponse{Events: acks}
	for _, ack := range acks {
		resp.LastSeq = max(resp.LastSeq, ack.Seq)
	}
	a.writeJSON(w, http.StatusAccepted, resp)
}

func writeInvalid(w http.ResponseWriter, err error) {
	fes := ledger.FieldErrors(err)
	parts := make([]string, 0, len(fes))
	for _, fe := range fes {
		parts = append(parts, fmt.Sprintf("event %d: %s", fe.Index, fe.Error()))
	}
	writeProblem(w, problem{Status: http.StatusBadRequest, Title: "Invalid event", Detail: strings.Join(parts, "; "), Errors: fes})
}

// awaitMinSeq honours min_seq: it waits, bounded, until the projection has
// applied that sequence. It writes the problem and returns false when it
// cannot.
func (a *api) awaitMinSeq(w http.ResponseWriter, r *http.Request) bool {
	raw := r.URL.Query().Get("min_seq")
	if raw == "" {
		return true
	}
	seq, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		writeProblem(w, problem{Status: http.StatusBadRequest, Detail: fmt.Sprintf("min_seq %q: must be a whole number ≥ 0", raw),
			Errors: []*ledger.FieldError{{Field: "min_seq", Value: raw, Rule: "must be a whole number ≥ 0"}}})
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), minSeqWaitMax)
	defer cancel()
	if err := a.projector.WaitApplied(ctx, seq); err != nil {
		writeProblem(w, problem{Status: http.StatusGatewayTimeout, Title: "Projection behind",
			Detail: fmt.Sprintf("min_seq %d: the projection has applied seq %d and did not reach it within %s", seq, a.projector.Applied(), minSeqWaitMax)})
		return false
	}
	return true
}

// checkNames refuses path tokens that are not valid shop or sku names.
func checkNames(w http.ResponseWriter, r *http.Request, names ...string) bool {
	for _, name := range names {
		v := r.PathValue(name)
		e := ledger.Event{Shop: v, SKU: v}
		for _, fe := range ledger.FieldErrors(e.Validate()) {
			if fe.Field == "shop" {
				writeProblem(w, problem{Status: http.StatusBadRequest, Detail: fmt.Sprintf("%s %s", name, fe.Rule),
					Errors: []*ledger.FieldError{{Field: name, Value: fe.Value, Rule: fe.Rule}}})
				return false
			}
		}
	}
	return true
}

func (a *api) storeError(w http.ResponseWriter, err error) {
	a.log.Warn("read model read failed", "err", err)
	writeProblem(w, problem{Status: http.StatusServiceUnavailable, Detail: "read model: " + err.Error()})
}

func (a *api) getSKUs(w http.ResponseWriter, r *http.Request) {
	if !checkNames(w, r, "shop") || !a.awaitMinSeq(w, r) {
		return
	}
	views, err := a.store.SKUs(r.Context(), r.PathValue("shop"))
	if err != nil {
		a.storeError(w, err)
		return
	}
	a.writeJSON(w, http.StatusOK, map[string]any{"shop": r.PathValue("shop"), "skus": views, "applied_seq": a.projector.Applied()})
}

func (a *api) getSKU(w http.ResponseWriter, r *http.Request) {
	if !checkNames(w, r, "shop", "sku") || !a.awaitMinSeq(w, r) {
		return
	}
	if r.URL.Query().Has("as_of") {
		a.getSKUAsOf(w, r)
		return
	}
	v, err := a.store.SKU(r.Context(), r.PathValue("shop"), r.PathValue("sku"))
	if errors.Is(err, projections.ErrNotFound) {
		writeProblem(w, problem{Status: http.StatusNotFound, Detail: fmt.Sprintf("no event has named sku %s of shop %s", r.PathValue("sku"), r.PathValue("shop"))})
		return
	}
	if err != nil {
		a.storeError(w, err)
		return
	}
	a.writeJSON(w, http.StatusOK, v)
}

func (a *api) getAlerts(w http.ResponseWriter, r *http.Request) {
	if !checkNames(w, r, "shop") {
		return
	}
	f := projections.AlertFilter{Shop: r.PathValue("shop")}
	switch st := r.URL.Query().Get("state"); st {
	case "", "open":
		f.State = projections.AlertOpen
	case "resolved":
		f.State = projections.AlertResolved
	case "all":
	default:
		writeProblem(w, problem{Status: http.StatusBadRequest, Detail: fmt.Sprintf("state %q: must be open, resolved or all", st),
			Errors: []*ledger.FieldError{{Field: "state", Value: st, Rule: "must be open, resolved or all"}}})
		return
	}
	if !a.awaitMinSeq(w, r) {
		return
	}
	alerts, err := a.store.Alerts(r.Context(), f)
	if err != nil {
		a.storeError(w, err)
		return
	}
	a.writeJSON(w, http.StatusOK, map[string]any{"shop": f.Shop, "alerts": alerts, "applied_seq": a.projector.Applied()})
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

// getHistory reads a SKU's events from the stream with an ordered consumer
// filtered on its subject.
func (a *api) getHistory(w http.ResponseWriter, r *http.Request) {
	if !checkNames(w, r, "shop", "sku") {
		return
	}
	shop, sku := r.PathValue("shop"), r.PathValue("sku")
	q := r.URL.Query()
	limit, after := historyDefault, uint64(0)
	if raw := q.Get("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > historyMax {
			writeProblem(w, problem{Status: http.StatusBadRequest, Detail: fmt.Sprintf("limit %q: must be from 1 to %d", raw, historyMax),
				Errors: []*ledger.FieldError{{Field: "limit", Value: raw, Rule: fmt.Sprintf("must be from 1 to %d", historyMax)}}})
			return
		}
		limit = n
	}
	if raw := q.Get("after_seq"); raw != "" {
		n, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			writeProblem(w, problem{Status: http.StatusBadRequest, Detail: fmt.Sprintf("after_seq %q: must be a whole number", raw),
				Errors: []*ledger.FieldError{{Field: "after_seq", Value: raw, Rule: "must be a whole number"}}})
			return
		}
		after = n
	}
	ctx := r.Context()
	msgs, more, err := a.history.Read(ctx, shop, sku, after, limit)
	if errors.Is(err, transport.ErrNoEvents) {
		writeProblem(w, problem{Status: http.StatusNotFound, Detail: fmt.Sprintf("no event has named sku %s of shop %s", sku, shop)})
		return
	}
	if err != nil {
		writeProblem(w, problem{Status: http.StatusServiceUnavailable, Detail: "read history: " + err.Error()})
		return
	}
	refused, err := a.history.Refusals(ctx, shop, sku)
	if err != nil {
		writeProblem(w, problem{Status: http.StatusServiceUnavailable, Detail: "read refusals: " + err.Error()})
		return
	}
	entries := make([]historyEntry, len(msgs))
	for i, m := range msgs {
		entries[i] = historyEntry{Seq: m.Seq, StoredAt: m.StoredAt, Event: rawJSON(m.Data), Refused: refused[m.Seq]}
	}
	resp := map[string]any{"shop": shop, "sku": sku, "events": entries}
	if more {
		resp["next_after_seq"] = entries[len(entries)-1].Seq
	}
	a.writeJSON(w, http.StatusOK, resp)
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

// health is the answer of /healthz.
type health struct {
	Status        string `json:"status"`
	NATS          string `json:"nats"`
	Store         string `json:"store"`
	Projector     string `json:"projector"`
	AppliedSeq    uint64 `json:"applied_seq"`
	StreamLastSeq uint64 `json:"stream_last_seq"`
	Lag           uint64 `json:"lag"`
	DeadLettered  uint64 `json:"dead_lettered"`
	Durability    string `json:"durability"`
}

func (a *api) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	h := health{Status: "ok", NATS: "ok", Store: "ok", Projector: "ok", Durability: a.durability,
		AppliedSeq: a.projector.Applied(), DeadLettered: a.projector.DeadLettered()}
	if !a.nc.IsConnected() {
		h.NATS, h.Status = "disconnected", "degraded"
	} else if st, err := a.js.Stream(ctx, transport.EventStream); err != nil {
		h.NATS, h.Status = "stream: "+err.Error(), "degraded"
	} else {
		h.StreamLastSeq = st.CachedInfo().State.LastSeq
		if h.StreamLastSeq > h.AppliedSeq {
			h.Lag = h.StreamLastSeq - h.AppliedSeq
		}
	}
	if err := a.store.Ping(ctx); err != nil {
		h.Store, h.Status = err.Error(), "degraded"
	}
	if err := a.projector.Err(); err != nil {
		h.Projector, h.Status = err.Error(), "degraded"
	}
	status := http.StatusOK
	if h.Status != "ok" {
		status = http.StatusServiceUnavailable
	}
	a.writeJSON(w, status, h)
}
