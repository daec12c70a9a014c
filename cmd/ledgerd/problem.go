package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// problem is an RFC 9457 problem detail, the body of every error answer.
// Errors lists each field at fault; Appended the events a failed POST stored
// before it failed.
type problem struct {
	Type     string               `json:"type"`
	Title    string               `json:"title"`
	Status   int                  `json:"status"`
	Detail   string               `json:"detail,omitempty"`
	Errors   []*ledger.FieldError `json:"errors,omitempty"`
	Appended []transport.Ack      `json:"appended,omitempty"`
}

// httpError is an error that carries its answer: the status, a title when
// the status text is not enough, the fields at fault, and how long a client
// should wait before it asks again. The HTTP layer makes one for what only
// it knows (a bad query value, a wait that ran out); errors from the layers
// below are mapped by problemOf.
type httpError struct {
	status     int
	title      string
	detail     string
	fields     []*ledger.FieldError
	retryAfter time.Duration
	cause      error
}

// Error returns the detail.
func (e *httpError) Error() string { return e.detail }

// Unwrap returns the cause, nil when the HTTP layer made the error.
func (e *httpError) Unwrap() error { return e.cause }

// badParam refuses a query, header or path value: 400 naming it.
func badParam(field, value, rule string) *httpError {
	return &httpError{status: http.StatusBadRequest, detail: fmt.Sprintf("%s %q: %s", field, value, rule),
		fields: []*ledger.FieldError{{Field: field, Value: value, Rule: rule}}}
}

// explained replaces a cause's message with one that names what was asked,
// keeping the cause for errors.Is: the 404 of a SKU no event named says
// which SKU, not "not found".
type explained struct {
	msg   string
	cause error
}

// Error returns the message that names what was asked.
func (e *explained) Error() string { return e.msg }

// Unwrap returns the cause.
func (e *explained) Unwrap() error { return e.cause }

// noSKU is the error of a read of a SKU that no event named.
func noSKU(shop, sku string, cause error) error {
	return &explained{msg: fmt.Sprintf("no event has named sku %s of shop %s", sku, shop), cause: cause}
}

// appendError is a failed append with the events the stream stored before
// it failed, which the answer lists.
type appendError struct {
	acks []transport.Ack
	err  error
}

// Error returns the append error's message.
func (e *appendError) Error() string { return e.err.Error() }

// Unwrap returns the append error.
func (e *appendError) Unwrap() error { return e.err }

// problemOf maps an error to its answer, the one place that does:
//
//   - an *httpError answers as it says;
//   - an invalid event (ledger.ErrInvalidEvent) 400, each field named;
//   - a broken rule (*ledger.RuleError) 409, naming the field;
//   - a SKU nothing named (projections.ErrNotFound, transport.ErrNoEvents) 404;
//   - a history longer than an as_of read folds (transport.ErrHistoryTooLong) 422;
//   - anything else is a part that failed (NATS, the read model): 503.
//
// An *appendError adds the events stored before the failure.
func problemOf(err error) (problem, time.Duration) {
	p, retry := classify(err)
	var ae *appendError
	if errors.As(err, &ae) {
		p.Appended = ae.acks
	}
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	return p, retry
}

func classify(err error) (problem, time.Duration) {
	var he *httpError
	var rule *ledger.RuleError
	switch {
	case errors.As(err, &he):
		return problem{Status: he.status, Title: he.title, Detail: he.detail, Errors: he.fields}, he.retryAfter
	case errors.As(err, &rule):
		return problem{Status: http.StatusConflict, Title: "Rule broken", Detail: rule.Error(),
			Errors: []*ledger.FieldError{{Index: rule.Index, Field: rule.Field, Value: rule.Value, Rule: rule.Rule}}}, 0
	case errors.Is(err, ledger.ErrInvalidEvent):
		fes := ledger.FieldErrors(err)
		parts := make([]string, 0, len(fes))
		for _, fe := range fes {
			parts = append(parts, fmt.Sprintf("event %d: %s", fe.Index, fe.Error()))
		}
		return problem{Status: http.StatusBadRequest, Title: "Invalid event", Detail: strings.Join(parts, "; "), Errors: fes}, 0
	case errors.Is(err, projections.ErrNotFound), errors.Is(err, transport.ErrNoEvents):
		return problem{Status: http.StatusNotFound, Detail: err.Error()}, 0
	case errors.Is(err, transport.ErrHistoryTooLong):
		return problem{Status: http.StatusUnprocessableEntity, Detail: err.Error()}, 0
	}
	return problem{Status: http.StatusServiceUnavailable, Detail: err.Error()}, 0
}

// writeError answers err as problem+json (see problemOf). A part that failed
// (503 without a Retry-After of the HTTP layer's own) is logged.
func writeError(w http.ResponseWriter, log *slog.Logger, r *http.Request, err error) {
	p, retry := problemOf(err)
	if retry > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
	}
	var he *httpError
	if p.Status == http.StatusServiceUnavailable && !errors.As(err, &he) && log != nil {
		log.Warn("request failed", "route", r.Pattern, "err", err)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// errorsTo adapts a handler that returns its error to http.HandlerFunc: the
// error is answered by writeError. A handler that has begun its answer
// returns nil.
func errorsTo(log *slog.Logger, h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			writeError(w, log, r, err)
		}
	}
}

// headerApplied names the header every JSON answer carries: the sequence
// of the event stream the projection had applied. On an answer from the
// read model (a view, a list of views, alerts) it is read before the read
// model is, so it is a lower bound: every event at or below it is
// reflected in the answer, which may reflect later ones too (a view's
// last_seq may be above it). Pass it as min_seq to read at least as much
// again. On other answers (POST, history, as_of, /healthz) it is the
// applied sequence when the answer was made.
const headerApplied = "Ledger-Applied-Seq"

// writeJSON answers v with status and applied as headerApplied.
func writeJSON(w http.ResponseWriter, log *slog.Logger, status int, applied uint64, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(headerApplied, strconv.FormatUint(applied, 10))
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil && log != nil {
		log.Debug("write response", "err", err)
	}
}

// checkNames refuses path tokens that are not valid shop or sku names.
func checkNames(r *http.Request, names ...string) error {
	for _, name := range names {
		v := r.PathValue(name)
		e := ledger.Event{Shop: v, SKU: v}
		for _, fe := range ledger.FieldErrors(e.Validate()) {
			if fe.Field == "shop" {
				return &httpError{status: http.StatusBadRequest, detail: fmt.Sprintf("%s %s", name, fe.Rule),
					fields: []*ledger.FieldError{{Field: name, Value: fe.Value, Rule: fe.Rule}}}
			}
		}
	}
	return nil
}
