package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"stockledger/consumers"
)

// fakeParts is a partitioned projection's state as health reads it.
type fakeParts struct {
	mu     sync.Mutex
	states []consumers.PartitionState
}

func (f *fakeParts) States(time.Time) ([]consumers.PartitionState, time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]consumers.PartitionState(nil), f.states...), time.Now()
}

func (f *fakeParts) LeaseErr() error { return nil }

// pingFunc is a store probe.
type pingFunc func(ctx context.Context) error

func (f pingFunc) Ping(ctx context.Context) error { return f(ctx) }

// hangingProbe answers no stream probe until released: NATS electing a
// leader.
type hangingProbe struct{ release chan struct{} }

func (p hangingProbe) EventLastSeq(ctx context.Context) (uint64, error) {
	select {
	case <-p.release:
		return 0, errors.New("released")
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func healthOf(t *testing.T, h *healthAPI) (int, health) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.healthz(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	var out health
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("/healthz body %s: %v", rec.Body.Bytes(), err)
	}
	return rec.Code, out
}

// TestHealthPartitions: /healthz is degraded, naming each cause, for a
// partition without a live owner, a projector of this instance that
// restarts and a partition past the lag bound; its partitions block and
// /metrics give each partition's owner and lag; ok once all is well.
func TestHealthPartitions(t *testing.T) {
	p := &fakeProgress{}
	p.applied.Store(100)
	parts := &fakeParts{states: []consumers.PartitionState{
		{Partition: 0, Owner: "a", Mine: true, Checkpoint: 50, LastSeq: 50},
		{Partition: 1, Owner: "", Checkpoint: 60, LastSeq: 70, Lag: 10},
		{Partition: 2, Owner: "a", Mine: true, ProjectorErr: errors.New("look up consumer: timeout"), Checkpoint: 80, LastSeq: 80},
		{Partition: 3, Owner: "b", Checkpoint: 1, LastSeq: 20_001, Lag: 20_000},
	}}
	h := &healthAPI{log: slog.New(slog.NewTextHandler(io.Discard, nil)), projection: p, parts: parts, gate: newStartGate(p, 0),
		probes: newProbeCache(okProbe{last: 100}, pingFunc(func(context.Context) error { return nil })), maxLag: 10_000}
	code, got := healthOf(t, h)
	reasons := strings.Join(got.Reasons, "; ")
	if code != http.StatusServiceUnavailable || got.Status != "degraded" ||
		!strings.Contains(reasons, "partition 1: no live owner") ||
		!strings.Contains(reasons, "partition 2: projector restarting: look up consumer: timeout") ||
		!strings.Contains(reasons, "partition 3: lag 20000 above 10000") || len(got.Reasons) != 3 {
		t.Errorf("/healthz: %d %+v; want 503 degraded for partitions 1, 2 and 3", code, got)
	}
	if len(got.Partitions) != 4 || got.Partitions[3].Owner != "b" || got.Partitions[3].Lag != 20_000 || got.Partitions[0].Projector != "ok" {
		t.Errorf("partitions block %+v; want each partition's owner and lag", got.Partitions)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(newPartitionCollector(parts))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			seen[key] = m.GetGauge().GetValue()
		}
	}
	for key, want := range map[string]float64{
		"ledger_partition_lag_events,partition=3":     20_000,
		"ledger_partition_owner_live,partition=1":     0,
		"ledger_partition_owner,owner=b,partition=3":  1,
		"ledger_partition_projector_up,partition=2":   0,
		"ledger_partition_projector_up,partition=0":   1,
		"ledger_partition_checkpoint_seq,partition=2": 80,
	} {
		if got, ok := seen[key]; !ok || got != want {
			t.Errorf("metric %s = %v (present %v), want %v", key, got, ok, want)
		}
	}

	parts.mu.Lock()
	parts.states[1].Owner = "b"
	parts.states[2].ProjectorErr = nil
	parts.states[3].Checkpoint, parts.states[3].Lag = 20_001, 0
	parts.mu.Unlock()
	if code, got := healthOf(t, h); code != http.StatusOK || got.Status != "ok" || len(got.Reasons) != 0 {
		t.Errorf("/healthz once every partition is owned and caught up: %d %+v; want 200 ok", code, got)
	}
}

// TestHealthAnswersWhileNATSHangs: while the stream probe gets no answer
// (NATS elects a leader), /healthz still answers, from memory, within its
// own deadline, and says what it does not know.
func TestHealthAnswersWhileNATSHangs(t *testing.T) {
	p := &fakeProgress{}
	probe := hangingProbe{release: make(chan struct{})}
	defer close(probe.release)
	h := &healthAPI{log: slog.New(slog.NewTextHandler(io.Discard, nil)), projection: p, gate: newStartGate(p, 0),
		probes: newProbeCache(probe, pingFunc(func(context.Context) error { return nil })), maxLag: 10_000}
	for range 3 {
		began := time.Now()
		code, got := healthOf(t, h)
		// A liveness bound (the probe itself waits healthProbeTimeout), not
		// a speed figure.
		if took := time.Since(began); took >= healthProbeTimeout {
			t.Fatalf("/healthz took %s while NATS hangs; its probe's own bound is %s", took, healthProbeTimeout)
		}
		if code != http.StatusServiceUnavailable || got.NATS == "ok" || got.Store != "ok" {
			t.Errorf("/healthz while NATS hangs: %d %+v; want 503 naming nats, store ok", code, got)
		}
	}
}
