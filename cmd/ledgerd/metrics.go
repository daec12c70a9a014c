package main

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"stockledger/consumers"
	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// Scrape bounds.
const (
	// scrapeTimeout bounds the reads one scrape makes (stream info, alert
	// sums); a figure not read by then is left out of that scrape.
	scrapeTimeout = 2 * time.Second
	// scrapesInFlightMax bounds concurrent scrapes of /metrics; one more
	// is answered 503.
	scrapesInFlightMax = 4
	// scrapeHandlerTimeout bounds one scrape; past it the scrape is
	// answered 503.
	scrapeHandlerTimeout = 10 * time.Second
)

// metrics are ledgerd's Prometheus figures, on a registry of their own.
type metrics struct {
	reg           *prometheus.Registry
	appended      *prometheus.CounterVec
	applied       *prometheus.CounterVec
	batchSize     prometheus.Histogram
	commitSeconds prometheus.Histogram
	deadLettered  prometheus.Counter
	httpSeconds   *prometheus.HistogramVec
	liveClients   prometheus.Gauge
	liveDropped   *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		appended: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_events_appended_total",
			Help: "Events appended to the stream through the HTTP API, by type."}, []string{"type"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_events_applied_total",
			Help: "Events folded and committed by the projector, by type."}, []string{"type"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ledger_projector_batch_messages",
			Help: "Messages per projector batch.", Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000}}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ledger_projector_commit_seconds",
			Help: "Latency of the store commit of one projector batch.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_dead_lettered_total",
			Help: "Messages the projector sent to the dead-letter stream."}),
		httpSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ledger_http_request_seconds",
			Help:    "HTTP request latency by route and status (the live feed counts its whole connection).",
			Buckets: prometheus.DefBuckets}, []string{"route", "code"}),
		liveClients: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ledger_live_clients",
			Help: "Connected server-sent-event clients of /v1/shops/{shop}/live."}),
		liveDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_live_clients_dropped_total",
			Help: "Live clients dropped by the server, by reason."}, []string{"reason"}),
	}
	m.reg.MustRegister(m.appended, m.applied, m.batchSize, m.commitSeconds, m.deadLettered, m.httpSeconds,
		m.liveClients, m.liveDropped, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// hooks feed the projector's figures into the metrics.
func (m *metrics) hooks() consumers.Hooks {
	return consumers.Hooks{
		Committed: func(b consumers.BatchStats) {
			m.batchSize.Observe(float64(b.Messages))
			m.commitSeconds.Observe(b.CommitTook.Seconds())
			for t, n := range b.Applied {
				m.applied.WithLabelValues(string(t)).Add(float64(n))
			}
		},
		DeadLettered: m.deadLettered.Inc,
	}
}

// registerState adds the figures read at scrape time: projector lag, the
// open alerts by kind with their exposure and, with partitions (parts not
// nil), each partition's owner and lag.
func (m *metrics) registerState(probes *probeCache, p projection, parts partitionStates, store projections.Reader, log *slog.Logger) {
	if parts != nil {
		m.reg.MustRegister(newPartitionCollector(parts))
	}
	m.reg.MustRegister(&stateCollector{probes: probes, projector: p, store: store, log: log,
		lag:        prometheus.NewDesc("ledger_projector_lag_events", "Event stream last sequence minus the sequence the projector applied.", nil, nil),
		appliedSeq: prometheus.NewDesc("ledger_projector_applied_seq", "Last event stream sequence the projector committed.", nil, nil),
		heldSKUs:   prometheus.NewDesc("ledger_projector_skus_held", "SKU states the projector holds in memory.", nil, nil),
		heldOrders: prometheus.NewDesc("ledger_projector_orders_held", "Orders the projector's SKU states hold in memory (open and early ones; closed ones live in the store).", nil, nil),
		open:       prometheus.NewDesc("ledger_alerts_open", "Open alerts of all shops by kind.", []string{"kind"}, nil),
		exposure:   prometheus.NewDesc("ledger_alerts_open_exposure_fen", "Money at risk (fen) of the open alerts of all shops by kind.", []string{"kind"}, nil),
	})
}

type stateCollector struct {
	probes                          *probeCache // the event stream's last sequence, from /healthz's probe
	projector                       projection
	store                           projections.Reader
	log                             *slog.Logger
	lag, appliedSeq, open, exposure *prometheus.Desc
	heldSKUs, heldOrders            *prometheus.Desc
}

// Describe sends the descriptions of the figures read at scrape time.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lag
	ch <- c.appliedSeq
	ch <- c.heldSKUs
	ch <- c.heldOrders
	ch <- c.open
	ch <- c.exposure
}

// Collect reads the figures, within scrapeTimeout.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	applied := c.projector.Applied()
	ch <- prometheus.MustNewConstMetric(c.appliedSeq, prometheus.GaugeValue, float64(applied))
	skus, orders := c.projector.Held()
	ch <- prometheus.MustNewConstMetric(c.heldSKUs, prometheus.GaugeValue, float64(skus))
	ch <- prometheus.MustNewConstMetric(c.heldOrders, prometheus.GaugeValue, float64(orders))
	// The stream's last sequence from the background probe: a scrape
	// makes no NATS request, and while NATS elects a leader the lag is
	// left out rather than waited for.
	if p := c.probes.cached(); p.natsErr == nil && !p.natsAt.IsZero() && time.Since(p.natsAt) <= healthStaleAfter {
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(p.streamLast-min(p.streamLast, applied)))
	}
	totals, err := c.store.OpenAlertTotals(ctx)
	if err != nil {
		c.log.Warn("metrics: open alert totals", "err", err)
		return
	}
	for _, k := range projections.AlertKinds {
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(totals[k].Open), string(k))
		ch <- prometheus.MustNewConstMetric(c.exposure, prometheus.GaugeValue, float64(totals[k].ExposureFen), string(k))
	}
}

// partitionCollector reports each partition from what the process holds in
// memory (consumers.Partitioned.States): no request at scrape time.
type partitionCollector struct {
	parts                                 partitionStates
	lag, checkpoint, live, owner, running *prometheus.Desc
}

func newPartitionCollector(parts partitionStates) *partitionCollector {
	part := []string{"partition"}
	return &partitionCollector{parts: parts,
		lag:        prometheus.NewDesc("ledger_partition_lag_events", "Events of the partition in the stream past its checkpoint, as of the last progress read.", part, nil),
		checkpoint: prometheus.NewDesc("ledger_partition_checkpoint_seq", "Last stream sequence committed for the partition.", part, nil),
		live:       prometheus.NewDesc("ledger_partition_owner_live", "1 while some instance holds a live lease of the partition, else 0.", part, nil),
		owner:      prometheus.NewDesc("ledger_partition_owner", "1 for the instance holding the partition's lease (label owner).", []string{"partition", "owner"}, nil),
		running: prometheus.NewDesc("ledger_partition_projector_up",
			"For this instance's partitions: 1 while its projector works, 0 while it restarts.", part, nil),
	}
}

// Describe sends the descriptions of the partition figures.
func (c *partitionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.lag, c.checkpoint, c.live, c.owner, c.running} {
		ch <- d
	}
}

// Collect reports every partition.
func (c *partitionCollector) Collect(ch chan<- prometheus.Metric) {
	states, _ := c.parts.States(time.Now())
	for _, st := range states {
		p := strconv.Itoa(st.Partition)
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(st.Lag), p)
		ch <- prometheus.MustNewConstMetric(c.checkpoint, prometheus.GaugeValue, float64(st.Checkpoint), p)
		live := 0.0
		if st.Owner != "" {
			live = 1
			ch <- prometheus.MustNewConstMetric(c.owner, prometheus.GaugeValue, 1, p, st.Owner)
		}
		ch <- prometheus.MustNewConstMetric(c.live, prometheus.GaugeValue, live, p)
		if st.Mine {
			up := 1.0
			if st.ProjectorErr != nil {
				up = 0
			}
			ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, up, p)
		}
	}
}

// handler serves /metrics.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{MaxRequestsInFlight: scrapesInFlightMax, Timeout: scrapeHandlerTimeout})
}

// eventsAppended counts the events a POST stored, by type; duplicates are
// not counted. A nil *metrics counts nothing (so do the methods below).
func (m *metrics) eventsAppended(events []ledger.Event, acks []transport.Ack) {
	if m == nil {
		return
	}
	for i, ack := range acks {
		if !ack.Duplicate && i < len(events) {
			m.appended.WithLabelValues(string(events[i].Type)).Inc()
		}
	}
}

// liveConnected counts a live client in; the function returned counts it
// out.
func (m *metrics) liveConnected() func() {
	if m == nil {
		return func() {}
	}
	m.liveClients.Inc()
	return m.liveClients.Dec
}

// liveDroppedFor counts a live client the server dropped, by reason.
func (m *metrics) liveDroppedFor(reason string) {
	if m == nil {
		return
	}
	m.liveDropped.WithLabelValues(dropLabel(reason)).Inc()
}

// instrument records each request's latency by its route pattern.
func (m *metrics) instrument(next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		began := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		m.httpSeconds.WithLabelValues(route, strconv.Itoa(sw.code)).Observe(time.Since(began).Seconds())
	})
}

// statusWriter remembers the status code; Unwrap lets http.ResponseController
// reach the connection (flushes and deadlines of the live feed).
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

// WriteHeader remembers the first status code and passes it on.
func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write passes b on; a write without WriteHeader is a 200.
func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap returns the ResponseWriter wrapped.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
