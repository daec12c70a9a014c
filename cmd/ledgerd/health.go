package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// healthTimeout bounds the probes of one /healthz answer (stream info,
// store ping); a probe that takes longer reports its error.
const healthTimeout = 2 * time.Second

// health is the answer of /healthz.
type health struct {
	// Status is ok; starting while the read model is rebuilt at start and
	// reads wait (see startGate); degraded when a part fails.
	Status        string `json:"status"`
	NATS          string `json:"nats"`
	Store         string `json:"store"`
	Projector     string `json:"projector"`
	AppliedSeq    uint64 `json:"applied_seq"`
	StreamLastSeq uint64 `json:"stream_last_seq"`
	Lag           uint64 `json:"lag"`
	// TargetSeq, while starting, is the event stream's last sequence at
	// start: reads are answered once applied_seq reaches it.
	TargetSeq    uint64 `json:"target_seq,omitempty"`
	DeadLettered uint64 `json:"dead_lettered"`
	Durability   string `json:"durability"`
}

// healthAPI serves /healthz.
type healthAPI struct {
	log        *slog.Logger
	stream     streamProbe
	store      pinger
	projection projectionState
	gate       *startGate
	durability string
}

// healthz answers 200 when every part works and reads are answered, 503
// otherwise, naming what is wrong or how far the start has come.
func (h *healthAPI) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	s := health{Status: "ok", NATS: "ok", Store: "ok", Projector: "ok", Durability: h.durability,
		AppliedSeq: h.projection.Applied(), DeadLettered: h.projection.DeadLettered()}
	if last, err := h.stream.EventLastSeq(ctx); err != nil {
		s.NATS, s.Status = err.Error(), "degraded"
	} else {
		s.StreamLastSeq = last
		s.Lag = last - min(last, s.AppliedSeq)
	}
	if err := h.store.Ping(ctx); err != nil {
		s.Store, s.Status = err.Error(), "degraded"
	}
	if err := h.projection.Err(); err != nil {
		s.Projector, s.Status = err.Error(), "degraded"
	}
	if starting, target := h.gate.starting(); starting {
		s.TargetSeq = target
		if s.Status == "ok" {
			s.Status = "starting"
		}
	}
	status := http.StatusOK
	if s.Status != "ok" {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, h.log, status, s.AppliedSeq, s)
}
