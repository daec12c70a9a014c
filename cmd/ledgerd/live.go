package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger"
	"stockledger/ledger/transport"
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
	// liveWriteTimeout bounds one write to a client.
	liveWriteTimeout = 10 * time.Second
	// liveRetry is the reconnect delay the feed asks browsers for.
	liveRetry = time.Second
	// liveSetupTimeout bounds opening the feed's consumer and watcher.
	liveSetupTimeout = 10 * time.Second
)

// liveMsg is one server-sent event. An empty id leaves the client's last
// event id as it was: only alert changes (and the alert snapshot) carry one.
type liveMsg struct {
	id    string
	event string
	data  []byte
}

// getLive serves GET /v1/shops/{shop}/live: server-sent events of the shop's
// SKU views and alert changes.
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
func (a *api) getLive(w http.ResponseWriter, r *http.Request) {
	if !checkNames(w, r, "shop") {
		return
	}
	shop := r.PathValue("shop")
	var resumeFrom uint64 // last alert sequence the client has, when resuming
	raw := r.Header.Get("Last-Event-ID")
	if raw == "" {
		raw = r.URL.Query().Get("last_event_id")
	}
	resuming := raw != ""
	if resuming {
		n, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			writeProblem(w, problem{Status: http.StatusBadRequest, Detail: fmt.Sprintf("Last-Event-ID %q: must be a whole number (an alert stream sequence)", raw),
				Errors: []*ledger.FieldError{{Field: "Last-Event-ID", Value: raw, Rule: "must be a whole number"}}})
			return
		}
		resumeFrom = n
	}
	limit := int64(liveClientsMax)
	if n := a.liveMax.Load(); n > 0 {
		limit = n
	}
	if n := a.liveClients.Add(1); n > limit {
		a.liveClients.Add(-1)
		w.Header().Set("Retry-After", "5")
		a.log.Warn("live client refused: too many clients", "shop", shop, "max", limit)
		writeProblem(w, problem{Status: http.StatusServiceUnavailable, Detail: fmt.Sprintf("live feed: %d clients connected, the most this server serves", limit)})
		return
	}
	defer a.liveClients.Add(-1)
	if a.metrics != nil {
		a.metrics.liveClients.Inc()
		defer a.metrics.liveClients.Dec()
	}

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	setup, setupCancel := context.WithTimeout(ctx, liveSetupTimeout)
	defer setupCancel()
	// Fix the alert position first: the snapshot then holds every change at
	// or below it (alerts reach the stream only after the store committed).
	startSeq := resumeFrom + 1
	if !resuming {
		st, err := a.js.Stream(setup, transport.AlertStream)
		if err != nil {
			writeProblem(w, problem{Status: http.StatusServiceUnavailable, Detail: "alert stream: " + err.Error()})
			return
		}
		startSeq = st.CachedInfo().State.LastSeq + 1
	}
	cons, err := a.js.OrderedConsumer(setup, transport.AlertStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{transport.AlertSubject(shop, ">")},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy, OptStartSeq: startSeq})
	if err != nil {
		writeProblem(w, problem{Status: http.StatusServiceUnavailable, Detail: "alert feed: " + err.Error()})
		return
	}
	alertIt, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		writeProblem(w, problem{Status: http.StatusServiceUnavailable, Detail: "alert feed: " + err.Error()})
		return
	}
	defer alertIt.Stop()
	watcher, err := a.kv.Watch(ctx, shop+".*")
	if err != nil {
		writeProblem(w, problem{Status: http.StatusServiceUnavailable, Detail: "view bucket: " + err.Error()})
		return
	}
	defer func() { _ = watcher.Stop() }()
	var snapshot []projections.Alert
	if !resuming {
		if snapshot, err = a.store.Alerts(setup, projections.AlertFilter{Shop: shop, State: projections.AlertOpen}); err != nil {
			a.storeError(w, err)
			return
		}
	}

	buffer := int64(liveBufferMax)
	if n := a.liveBuffer.Load(); n > 0 {
		buffer = n
	}
	out := make(chan liveMsg, buffer)
	dropped := make(chan string, 1)
	drop := func(reason string) {
		select {
		case dropped <- reason:
		default:
		}
	}
	// send queues without waiting: a client that fell liveBufferMax
	// messages behind on live view changes is dropped (the watcher pushes
	// and must not block). wait queues, waiting for room: the alert replay
	// pulls from the stream at the client's pace, and the current views of
	// a connect may outnumber the queue.
	send := func(m liveMsg) bool {
		select {
		case out <- m:
			return true
		default:
			drop(fmt.Sprintf("client fell %d messages behind", buffer))
			return false
		}
	}
	wait := func(m liveMsg) bool {
		select {
		case out <- m:
			return true
		case <-ctx.Done():
			return false
		}
	}
	go func() {
		for {
			m, err := alertIt.Next()
			if err != nil {
				if ctx.Err() == nil {
					drop("alert feed: " + err.Error())
				}
				return
			}
			meta, err := m.Metadata()
			if err != nil {
				drop("alert feed: " + err.Error())
				return
			}
			if !wait(liveMsg{id: strconv.FormatUint(meta.Sequence.Stream, 10), event: "alert", data: m.Data()}) {
				return
			}
		}
	}()
	go func() {
		put := wait // the current values, until the nil entry
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-watcher.Updates():
				if !ok {
					drop("view watcher closed")
					return
				}
				m := liveMsg{event: "ready", data: []byte("{}")}
				if e != nil {
					if e.Operation() != jetstream.KeyValuePut {
						continue
					}
					m = liveMsg{event: "view", data: e.Value()}
				}
				if !put(m) {
					return
				}
				if e == nil {
					put = send
				}
			}
		}
	}()

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(m liveMsg) error {
		_ = rc.SetWriteDeadline(time.Now().Add(liveWriteTimeout))
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
		b = append(b, '\n')
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if _, err := fmt.Fprintf(w, "retry: %d\n\n", liveRetry.Milliseconds()); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		return
	}
	if !resuming {
		data, _ := json.Marshal(snapshot)
		if err := write(liveMsg{id: strconv.FormatUint(startSeq-1, 10), event: "alerts", data: data}); err != nil {
			return
		}
	}
	a.log.Info("live client connected", "shop", shop, "resume_after", resumeFrom, "resuming", resuming, "clients", a.liveClients.Load())
	defer a.log.Info("live client disconnected", "shop", shop)
	beat := time.NewTicker(liveHeartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.liveStop:
			return // shutting down: the browser reconnects to the next ledgerd with its last id
		case reason := <-dropped:
			a.log.Warn("live client dropped", "shop", shop, "reason", reason)
			if a.metrics != nil {
				a.metrics.liveDropped.WithLabelValues(dropLabel(reason)).Inc()
			}
			return
		case m := <-out:
			if err := write(m); err != nil {
				return
			}
		case <-beat.C:
			_ = rc.SetWriteDeadline(time.Now().Add(liveWriteTimeout))
			if _, err := w.Write([]byte(": ping\n\n")); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}

// closeLive ends every live feed: http.Server.Shutdown does not cancel the
// requests it waits for, and a feed never ends by itself. Registered with
// RegisterOnShutdown; safe to call once.
func (a *api) closeLive() { close(a.liveStop) }

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
