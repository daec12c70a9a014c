package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"stockledger/projections"
)

// Live feed bounds.
const (
	// liveClientsMax bounds the connected live clients; past it a new one
	// gets 503 with Retry-After.
	liveClientsMax = 256
	// liveBufferMax bounds the messages queued for one client. A client
	// that falls this far behind on live view changes is dropped (logged
	// with the reason); its browser reconnects with Last-Event-ID and loses
	// no alert. Alerts and the current views of a connect wait for room.
	liveBufferMax = 1024
	// liveHeartbeat is how often an idle feed sends a comment, so that
	// proxies and clients see the connection alive.
	liveHeartbeat = 15 * time.Second
	// liveWriteTimeout bounds one write to a client; past it the client
	// is disconnected.
	liveWriteTimeout = 10 * time.Second
	// liveRetry is the reconnect delay the feed asks browsers for.
	liveRetry = time.Second
	// liveSetupTimeout bounds opening the feed's consumer and watcher and
	// reading the alert snapshot; past it the client gets 503.
	liveSetupTimeout = 10 * time.Second
	// liveBusyRetryAfter is the Retry-After of a client refused past
	// liveClientsMax.
	liveBusyRetryAfter = 5 * time.Second
)

// liveAPI serves GET /v1/shops/{shop}/live, the live feed.
type liveAPI struct {
	log     *slog.Logger
	source  liveSource
	model   model
	wait    *readWait
	metrics *metrics

	clients atomic.Int64
	// clientsMax and bufferMax override liveClientsMax and liveBufferMax
	// when above zero (tests).
	clientsMax, bufferMax atomic.Int64
	// stop is closed at shutdown to end the live feeds.
	stop chan struct{}
}

// liveMsg is one server-sent event. An empty id leaves the client's last
// event id as it was: only alert changes (and the alert snapshot) carry one.
type liveMsg struct {
	id    string
	event string
	data  []byte
}

// serve serves the live feed: server-sent events of the shop's SKU views
// and alert changes.
//
//   - event "view": a SKU's view; on every connect the current view of each
//     SKU comes first (from the view bucket), then every change.
//   - event "ready": the current views have all been sent.
//   - event "alerts": on a first connect (no Last-Event-ID), the shop's open
//     alerts, with the alert stream's last sequence as id.
//   - event "alert": one alert change, its id the alert stream sequence.
//
// A client that reconnects with Last-Event-ID N gets every alert change of
// the shop after sequence N from the stream, so none is lost.
func (l *liveAPI) serve(w http.ResponseWriter, r *http.Request) error {
	if err := checkNames(r, "shop"); err != nil {
		return err
	}
	shop := r.PathValue("shop")
	resume, err := lastEventID(r)
	if err != nil {
		return err
	}
	if err := l.wait.await(r, false); err != nil {
		return err
	}
	release, err := l.admit(shop)
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	sub, err := l.subscribe(ctx, shop, resume)
	if err != nil {
		return err
	}
	defer sub.stop()
	q := newLiveQueue(l.bufferMax.Load())
	go q.pumpAlerts(ctx, sub.alerts)
	go q.pumpViews(ctx, sub.views)
	l.stream(ctx, w, shop, sub, q)
	return nil
}

// resumePoint is where a client resumes the alert stream: after seq, when
// it sent Last-Event-ID.
type resumePoint struct {
	seq      uint64
	resuming bool
}

// lastEventID reads Last-Event-ID (or the last_event_id query parameter of
// clients that cannot set it).
func lastEventID(r *http.Request) (resumePoint, error) {
	raw := r.Header.Get("Last-Event-ID")
	if raw == "" {
		raw = r.URL.Query().Get("last_event_id")
	}
	if raw == "" {
		return resumePoint{}, nil
	}
	n, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		e := badParam("Last-Event-ID", raw, "must be a whole number")
		e.detail = fmt.Sprintf("Last-Event-ID %q: must be a whole number (an alert stream sequence)", raw)
		return resumePoint{}, e
	}
	return resumePoint{seq: n, resuming: true}, nil
}

// admit counts a client in, up to the bound; release counts it out.
func (l *liveAPI) admit(shop string) (release func(), err error) {
	limit := int64(liveClientsMax)
	if n := l.clientsMax.Load(); n > 0 {
		limit = n
	}
	if n := l.clients.Add(1); n > limit {
		l.clients.Add(-1)
		l.log.Warn("live client refused: too many clients", "shop", shop, "max", limit)
		return nil, &httpError{status: http.StatusServiceUnavailable, retryAfter: liveBusyRetryAfter,
			detail: fmt.Sprintf("live feed: %d clients connected, the most this server serves", limit)}
	}
	gone := l.metrics.liveConnected()
	return func() { l.clients.Add(-1); gone() }, nil
}

// subscription is one client's sources: the alert changes from its
// position, the view watch, and on a first connect the open alerts at that
// position.
type subscription struct {
	startSeq uint64
	resuming bool
	alerts   alertFeed
	views    viewFeed
	snapshot []projections.Alert
}

func (s *subscription) stop() {
	s.alerts.Stop()
	s.views.Stop()
}

// subscribe opens the sources of one client, within liveSetupTimeout; ctx
// bounds their life.
func (l *liveAPI) subscribe(ctx context.Context, shop string, resume resumePoint) (_ *subscription, err error) {
	setup, cancel := context.WithTimeout(ctx, liveSetupTimeout)
	defer cancel()
	sub := &subscription{startSeq: resume.seq + 1, resuming: resume.resuming}
	// Fix the alert position first: the snapshot then holds every change at
	// or below it (alerts reach the stream only after the store committed).
	if !resume.resuming {
		last, err := l.source.AlertLastSeq(setup)
		if err != nil {
			return nil, err
		}
		sub.startSeq = last + 1
	}
	if sub.alerts, err = l.source.FollowAlerts(setup, shop, sub.startSeq); err != nil {
		return nil, err
	}
	if sub.views, err = l.source.WatchViews(ctx, shop); err != nil {
		sub.alerts.Stop()
		return nil, err
	}
	if !resume.resuming {
		f := projections.AlertFilter{Shop: shop, State: projections.AlertOpen}
		if sub.snapshot, _, err = l.model.Alerts(setup, f); err != nil {
			sub.stop()
			return nil, readModelError(err)
		}
	}
	return sub, nil
}

// liveQueue is one client's queue of messages and the reason it is dropped.
type liveQueue struct {
	out     chan liveMsg
	dropped chan string
	size    int64
}

// newLiveQueue makes a queue of size messages, liveBufferMax when size is
// not above zero.
func newLiveQueue(size int64) *liveQueue {
	if size <= 0 {
		size = liveBufferMax
	}
	return &liveQueue{out: make(chan liveMsg, size), dropped: make(chan string, 1), size: size}
}

// drop asks for the client to be dropped; the first reason wins.
func (q *liveQueue) drop(reason string) {
	select {
	case q.dropped <- reason:
	default:
	}
}

// send queues without waiting: a client that fell the queue's size behind
// on live view changes is dropped (the watch pushes and must not block).
func (q *liveQueue) send(_ context.Context, m liveMsg) bool {
	select {
	case q.out <- m:
		return true
	default:
		q.drop(fmt.Sprintf("client fell %d messages behind", q.size))
		return false
	}
}

// wait queues, waiting for room: the alert replay pulls from the stream at
// the client's pace, and the current views of a connect may outnumber the
// queue.
func (q *liveQueue) wait(ctx context.Context, m liveMsg) bool {
	select {
	case q.out <- m:
		return true
	case <-ctx.Done():
		return false
	}
}

// pumpAlerts queues every alert change until the feed ends.
func (q *liveQueue) pumpAlerts(ctx context.Context, feed alertFeed) {
	for {
		c, err := feed.Next()
		if err != nil {
			if ctx.Err() == nil {
				q.drop("alert feed: " + err.Error())
			}
			return
		}
		if !q.wait(ctx, liveMsg{id: strconv.FormatUint(c.seq, 10), event: "alert", data: c.data}) {
			return
		}
	}
}

// pumpViews queues the current views (waiting for room), the ready mark,
// then each change (dropping the client that falls behind).
func (q *liveQueue) pumpViews(ctx context.Context, feed viewFeed) {
	put := q.wait
	for {
		c, err := feed.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				q.drop(err.Error())
			}
			return
		}
		m := liveMsg{event: "view", data: c.data}
		if c.ready {
			m = liveMsg{event: "ready", data: []byte("{}")}
		}
		if !put(ctx, m) {
			return
		}
		if c.ready {
			put = q.send
		}
	}
}

// stream writes the feed to the client until it goes, is dropped, or the
// server shuts down.
func (l *liveAPI) stream(ctx context.Context, w http.ResponseWriter, shop string, sub *subscription, q *liveQueue) {
	sse := newSSEWriter(w)
	if sse.start() != nil {
		return
	}
	if !sub.resuming {
		data, _ := json.Marshal(sub.snapshot)
		if sse.write(liveMsg{id: strconv.FormatUint(sub.startSeq-1, 10), event: "alerts", data: data}) != nil {
			return
		}
	}
	l.log.Info("live client connected", "shop", shop, "resume_after", sub.startSeq-1, "resuming", sub.resuming, "clients", l.clients.Load())
	defer l.log.Info("live client disconnected", "shop", shop)
	beat := time.NewTicker(liveHeartbeat)
	defer beat.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case <-l.stop:
			return // shutting down: the browser reconnects to the next ledgerd with its last id
		case reason := <-q.dropped:
			l.log.Warn("live client dropped", "shop", shop, "reason", reason)
			l.metrics.liveDroppedFor(reason)
			return
		case m := <-q.out:
			err = sse.write(m)
		case <-beat.C:
			err = sse.comment("ping")
		}
		if err != nil {
			return
		}
	}
}

// sseWriter writes server-sent events, each flushed within
// liveWriteTimeout.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func newSSEWriter(w http.ResponseWriter) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w)}
}

// start sends the headers and the reconnect delay.
func (s *sseWriter) start() error {
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
	return s.send(fmt.Appendf(nil, "retry: %d\n\n", liveRetry.Milliseconds()))
}

// write sends one event.
func (s *sseWriter) write(m liveMsg) error {
	var b []byte
	if m.id != "" {
		b = fmt.Appendf(b, "id: %s\n", m.id)
	}
	if m.event != "" {
		b = fmt.Appendf(b, "event: %s\n", m.event)
	}
	if m.data != nil {
		b = fmt.Appendf(b, "data: %s\n", m.data)
	}
	return s.send(append(b, '\n'))
}

// comment sends a comment line, which clients ignore.
func (s *sseWriter) comment(text string) error {
	return s.send([]byte(": " + text + "\n\n"))
}

func (s *sseWriter) send(b []byte) error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(liveWriteTimeout))
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	return s.rc.Flush()
}

// closeLive ends every live feed: http.Server.Shutdown does not cancel the
// requests it waits for, and a feed never ends by itself. Registered with
// RegisterOnShutdown; safe to call once.
func (l *liveAPI) closeLive() { close(l.stop) }

// dropLabel turns a drop reason into a metric label of few values.
func dropLabel(reason string) string {
	switch {
	case strings.HasPrefix(reason, "client"):
		return "slow_client"
	case strings.HasPrefix(reason, "alert"):
		return "alert_feed"
	}
	return "view_watcher"
}
