package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"stockledger/consumers"
)

// Health bounds. /healthz answers from what the process holds in memory:
// the probes of NATS and the store run in the background (probeCache), so
// that an answer never waits on a NATS leader election or a hung store.
const (
	// healthProbeEvery is how often the background probes run.
	healthProbeEvery = 500 * time.Millisecond
	// healthProbeTimeout bounds one probe (stream info, store ping); a
	// probe that takes longer reports its error.
	healthProbeTimeout = 2 * time.Second
	// healthStaleAfter: a probe without an answer for longer is reported
	// as failing ("no answer for 3.1s"), though it still runs.
	healthStaleAfter = 3 * time.Second
	// healthAnswerWait bounds the wait of one /healthz answer for a probe
	// in flight, when the last answer is older than two probe periods (no
	// background loop runs, or it is stuck): the answer's own deadline.
	healthAnswerWait = 300 * time.Millisecond
	// DefaultHealthMaxLag is the default of LEDGER_HEALTH_MAX_LAG: a
	// projection (or a partition of it) more events behind its stream is
	// degraded. At the 2,800 events/s of the DEPLOY.md load it is about 3.5 s
	// of events; a projector that works clears it in well under a second.
	DefaultHealthMaxLag = 10_000
	// healthMaxLagMax bounds LEDGER_HEALTH_MAX_LAG.
	healthMaxLagMax = 1_000_000_000
)

// health is the answer of /healthz.
type health struct {
	// Status is ok; starting while the read model is rebuilt at start and
	// reads wait (see startGate); degraded when a part fails, a partition
	// has no live owner or the lag passes LEDGER_HEALTH_MAX_LAG (Reasons
	// says which).
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
	// Reasons names every cause of degraded, one line each.
	Reasons []string `json:"reasons,omitempty"`
	// MaxLag is the lag bound (LEDGER_HEALTH_MAX_LAG).
	MaxLag uint64 `json:"max_lag"`
	// Leases, with partitions, is the last error of this instance's lease
	// loop ("ok" when none): a lease bucket electing a leader shows here
	// without degrading, as no lease is lost to it.
	Leases string `json:"leases,omitempty"`
	// Partitions, with partitions, is each partition's owner and lag.
	Partitions []partitionHealth `json:"partitions,omitempty"`
}

// partitionHealth is one partition in /healthz.
type partitionHealth struct {
	Partition int `json:"partition"`
	// Owner is the instance holding its lease, "" when none is live.
	Owner string `json:"owner"`
	// Projector, for this instance's partitions: ok or why it restarts.
	Projector  string `json:"projector,omitempty"`
	Checkpoint uint64 `json:"checkpoint"`
	LastSeq    uint64 `json:"last_seq"`
	Lag        uint64 `json:"lag"`
}

// partitionStates is what /healthz and the metrics read of a partitioned
// projection (consumers.Partitioned).
type partitionStates interface {
	States(now time.Time) ([]consumers.PartitionState, time.Time)
	LeaseErr() error
}

// healthAPI serves /healthz.
type healthAPI struct {
	log        *slog.Logger
	probes     *probeCache
	projection projectionState
	parts      partitionStates // nil without partitions
	gate       *startGate
	durability string
	maxLag     uint64
}

// healthz answers 200 when every part works, every partition is owned and
// within the lag bound, and reads are answered; 503 otherwise, naming what
// is wrong or how far the start has come. It answers within
// healthAnswerWait from the probes' last answers.
func (h *healthAPI) healthz(w http.ResponseWriter, r *http.Request) {
	p := h.probes.get(r.Context())
	s := health{Status: "ok", NATS: "ok", Store: "ok", Projector: "ok", Durability: h.durability, MaxLag: h.maxLag,
		AppliedSeq: h.projection.Applied(), DeadLettered: h.projection.DeadLettered()}
	if p.natsErr != nil {
		s.NATS = p.natsErr.Error()
		s.Reasons = append(s.Reasons, "nats: "+s.NATS)
	}
	s.StreamLastSeq = p.streamLast
	s.Lag = s.StreamLastSeq - min(s.StreamLastSeq, s.AppliedSeq)
	if p.storeErr != nil {
		s.Store = p.storeErr.Error()
		s.Reasons = append(s.Reasons, "store: "+s.Store)
	}
	if h.parts != nil {
		h.partitions(&s)
	} else {
		if err := h.projection.Err(); err != nil {
			s.Projector = err.Error()
			s.Reasons = append(s.Reasons, "projector: "+s.Projector)
		}
		if p.natsErr == nil && s.Lag > h.maxLag {
			s.Reasons = append(s.Reasons, fmt.Sprintf("lag %d above %d (LEDGER_HEALTH_MAX_LAG)", s.Lag, h.maxLag))
		}
	}
	if len(s.Reasons) > 0 {
		s.Status = "degraded"
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

// partitions fills the partitions block and its reasons: a partition
// without a live owner, a projector of this instance that restarts, a
// partition past the lag bound.
func (h *healthAPI) partitions(s *health) {
	s.Leases = "ok"
	if err := h.parts.LeaseErr(); err != nil {
		s.Leases = err.Error()
	}
	states, _ := h.parts.States(time.Now())
	for _, st := range states {
		ph := partitionHealth{Partition: st.Partition, Owner: st.Owner, Checkpoint: st.Checkpoint, LastSeq: st.LastSeq, Lag: st.Lag}
		switch {
		case st.Owner == "":
			s.Reasons = append(s.Reasons, fmt.Sprintf("partition %d: no live owner", st.Partition))
		case st.Mine && st.ProjectorErr != nil:
			ph.Projector = st.ProjectorErr.Error()
			s.Projector = fmt.Sprintf("partition %d: %s", st.Partition, ph.Projector)
			s.Reasons = append(s.Reasons, fmt.Sprintf("partition %d: projector restarting: %s", st.Partition, ph.Projector))
		case st.Mine:
			ph.Projector = "ok"
		}
		if st.Lag > h.maxLag {
			s.Reasons = append(s.Reasons, fmt.Sprintf("partition %d: lag %d above %d (LEDGER_HEALTH_MAX_LAG)", st.Partition, st.Lag, h.maxLag))
		}
		s.Partitions = append(s.Partitions, ph)
	}
}

// probeCache runs the probes of NATS and the store, at most one round at
// a time, and keeps their last answers. Safe for concurrent use.
type probeCache struct {
	stream streamProbe
	store  pinger

	mu       sync.Mutex
	last     probeResult
	inFlight chan struct{} // closed when the round in flight ends; nil when none
}

// probeResult is the last answer of each probe, and when each came.
type probeResult struct {
	streamLast        uint64
	natsErr, storeErr error
	natsAt, storeAt   time.Time
	began             time.Time // of the first round
}

func newProbeCache(stream streamProbe, store pinger) *probeCache {
	return &probeCache{stream: stream, store: store}
}

// run probes every healthProbeEvery until ctx ends.
func (c *probeCache) run(ctx context.Context) {
	t := time.NewTicker(healthProbeEvery)
	defer t.Stop()
	for {
		c.refresh()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refresh starts a round of probes unless one is in flight, and returns
// the channel closed when the round in flight ends.
func (c *probeCache) refresh() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inFlight != nil {
		return c.inFlight
	}
	done := make(chan struct{})
	c.inFlight = done
	if c.last.began.IsZero() {
		c.last.began = time.Now()
	}
	go c.probe(done)
	return done
}

// probe runs both probes at once, each within healthProbeTimeout, and
// records each answer as it comes.
func (c *probeCache) probe(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), healthProbeTimeout)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		last, err := c.stream.EventLastSeq(ctx)
		c.mu.Lock()
		c.last.natsErr, c.last.natsAt = err, time.Now()
		if err == nil {
			c.last.streamLast = last
		}
		c.mu.Unlock()
	})
	wg.Go(func() {
		err := c.store.Ping(ctx)
		c.mu.Lock()
		c.last.storeErr, c.last.storeAt = err, time.Now()
		c.mu.Unlock()
	})
	wg.Wait()
	c.mu.Lock()
	c.inFlight = nil
	c.mu.Unlock()
	close(done)
}

// get returns the probes' last answers; a probe without an answer for
// longer than healthStaleAfter is reported failing. When the answers are
// older than two probe periods it starts a round and waits for it, at most
// healthAnswerWait.
func (c *probeCache) get(ctx context.Context) probeResult {
	c.mu.Lock()
	oldest := c.last.natsAt
	if c.last.storeAt.Before(oldest) {
		oldest = c.last.storeAt
	}
	c.mu.Unlock()
	if time.Since(oldest) > 2*healthProbeEvery {
		t := time.NewTimer(healthAnswerWait)
		select {
		case <-c.refresh():
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	c.mu.Lock()
	p := c.last
	c.mu.Unlock()
	now := time.Now()
	p.natsErr = staleErr(p.natsErr, p.natsAt, p.began, now)
	p.storeErr = staleErr(p.storeErr, p.storeAt, p.began, now)
	return p
}

// cached returns the probes' last answers as they are, without starting or
// waiting for a probe (the metrics read it at scrape time).
func (c *probeCache) cached() probeResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// staleErr is err, or an error naming how long a probe has not answered
// when its last answer (or, before any, the first round) is older than
// healthStaleAfter, or that it has not answered yet.
func staleErr(err error, at, began, now time.Time) error {
	switch {
	case at.IsZero() && now.Sub(began) > healthStaleAfter:
		return fmt.Errorf("no answer for %.1fs", now.Sub(began).Seconds())
	case at.IsZero():
		return errNotProbed
	case now.Sub(at) > healthStaleAfter:
		return fmt.Errorf("no answer for %.1fs (last: %v)", now.Sub(at).Seconds(), errOrOK(err))
	}
	return err
}

// errNotProbed is a probe's state before its first answer.
var errNotProbed = fmt.Errorf("not answered yet")

func errOrOK(err error) any {
	if err == nil {
		return "ok"
	}
	return err
}
