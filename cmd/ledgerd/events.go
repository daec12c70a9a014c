package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"stockledger/ledger"
	"stockledger/ledger/transport"
)

// POST bounds.
const (
	// bodyBytesMax bounds a POST body: MaxBatch events of a few hundred
	// bytes. A longer body is refused with 413 and nothing is appended.
	bodyBytesMax = 2 << 20
	// appendTimeout bounds publishing one request's events; past it the
	// request answers 503 with the events stored so far (re-sending them
	// is safe).
	appendTimeout = 15 * time.Second
)

// batch is the body of POST /v1/events, read and decoded once: the guard
// checks the shops of its events, the handler appends them. err is why the
// body could not be read or decoded; the handler answers it.
type batch struct {
	events []ledger.Event
	err    error
}

// readBatch reads the body (at most bodyBytesMax) and decodes its events.
func readBatch(w http.ResponseWriter, r *http.Request) batch {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, bodyBytesMax))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			rule := fmt.Sprintf("at most %d bytes", bodyBytesMax)
			return batch{err: &httpError{status: http.StatusRequestEntityTooLarge, detail: "body: a request holds " + rule,
				fields: []*ledger.FieldError{{Field: "body", Rule: rule}}}}
		}
		return batch{err: &httpError{status: http.StatusBadRequest, detail: "read body: " + err.Error(), cause: err}}
	}
	events, err := ledger.DecodeEvents(body)
	if err != nil && !errors.Is(err, ledger.ErrInvalidEvent) {
		// DecodeEvents names the field of every problem it finds; should
		// one come without, the answer is still a 400 naming the body.
		err = &ledger.FieldError{Field: "body", Rule: "must be one event object or an array of events: " + err.Error()}
	}
	return batch{events: events, err: err}
}

// eventsAPI serves POST /v1/events.
type eventsAPI struct {
	log      *slog.Logger
	appender appender
	progress progress
	metrics  *metrics
}

// postEventsResponse answers POST /v1/events.
type postEventsResponse struct {
	Events []transport.Ack `json:"events"`
	// LastSeq is the highest sequence of the request: pass it as min_seq to
	// read your writes.
	LastSeq uint64 `json:"last_seq"`
}

// post appends the batch b, all or nothing (see transport.Publisher.Append),
// and answers each event's sequence.
func (h *eventsAPI) post(w http.ResponseWriter, r *http.Request, b batch) error {
	if b.err != nil {
		return b.err
	}
	ctx, cancel := context.WithTimeout(r.Context(), appendTimeout)
	defer cancel()
	acks, err := h.appender.Append(ctx, b.events)
	switch {
	case errors.Is(err, ledger.ErrInvalidEvent), errors.Is(err, ledger.ErrRuleBroken):
		return &appendError{acks: acks, err: err}
	case err != nil:
		return &appendError{acks: acks, err: fmt.Errorf("append: %w (re-sending the same events is safe: they are deduplicated)", err)}
	}
	h.metrics.eventsAppended(b.events, acks)
	resp := postEventsResponse{Events: acks}
	for _, ack := range acks {
		resp.LastSeq = max(resp.LastSeq, ack.Seq)
	}
	writeJSON(w, h.log, http.StatusAccepted, h.progress.Applied(), resp)
	return nil
}
