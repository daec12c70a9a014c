package main

import (
	"log/slog"
	"net/http"
)

// access is who may call a route when ledgerd requires tokens
// (LEDGER_TOKENS_FILE; see auth). Without tokens every request passes. The
// zero value is the strictest rule, so a route that names none is closed.
type access int

const (
	// accessAllShops needs a token granted every shop (*).
	accessAllShops access = iota
	// accessPathShop needs a token granted the {shop} of the path.
	accessPathShop
	// accessBodyShops needs a token granted every shop the events of the
	// body name (the body is decoded once, for the guard and the handler).
	accessBodyShops
	// accessToken needs a known token, whatever its shops: a request no
	// route matches, which reaches no data (404, 405).
	accessToken
	// accessOpen needs no token: the route names no shop's data.
	accessOpen
)

// route is one endpoint: its pattern, who may call it, and its handler;
// a route of accessBodyShops has events in place of handler.
type route struct {
	pattern string
	access  access
	handler http.Handler
	events  func(http.ResponseWriter, *http.Request, batch) error
}

// api is the HTTP layer: a group of handlers per kind of request, each
// with only the interfaces it uses (ports.go).
type api struct {
	log     *slog.Logger
	events  *eventsAPI
	reads   *readAPI
	history *historyAPI
	live    *liveAPI
	health  *healthAPI
	metrics *metrics // nil in tests that do not need them
}

// routes is the route table: every endpoint and its access rule.
func (a *api) routes() []route {
	e := func(h func(http.ResponseWriter, *http.Request) error) http.Handler { return errorsTo(a.log, h) }
	rs := []route{
		{pattern: "POST /v1/events", access: accessBodyShops, events: a.events.post},
		{pattern: "GET /v1/shops/{shop}", access: accessPathShop, handler: e(a.reads.shop)},
		{pattern: "GET /v1/shops/{shop}/sync", access: accessPathShop, handler: e(a.reads.sync)},
		{pattern: "GET /v1/shops/{shop}/skus", access: accessPathShop, handler: e(a.reads.skus)},
		{pattern: "GET /v1/shops/{shop}/skus/{sku}", access: accessPathShop, handler: e(a.reads.sku)},
		{pattern: "GET /v1/shops/{shop}/skus/{sku}/events", access: accessPathShop, handler: e(a.history.events)},
		{pattern: "GET /v1/shops/{shop}/alerts", access: accessPathShop, handler: e(a.reads.alerts)},
		{pattern: "GET /v1/shops/{shop}/live", access: accessPathShop, handler: e(a.live.serve)},
		// /healthz names no shop's data, nor does the dashboard page itself:
		// the page asks for a shop's data with a token of its own.
		{pattern: "GET /healthz", access: accessOpen, handler: http.HandlerFunc(a.health.healthz)},
		{pattern: "GET /{$}", access: accessOpen, handler: http.HandlerFunc(serveDashboard)},
	}
	if a.metrics != nil {
		rs = append(rs, route{pattern: "GET /metrics", access: accessAllShops, handler: a.metrics.handler()})
	}
	return rs
}

// handler serves the route table behind guard: each route's access rule
// is checked before its handler runs, then its latency is recorded (a
// refused request is not). A request no route matches needs a known
// token, then gets 404 or 405.
func (a *api) handler(guard *auth) http.Handler {
	mux := http.NewServeMux()
	for _, rt := range a.routes() {
		mux.Handle(rt.pattern, guard.protect(rt, a.metrics, a.log))
	}
	unmatched := guard.protect(route{access: accessToken, handler: mux}, a.metrics, a.log)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			unmatched.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}
