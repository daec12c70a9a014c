package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRouteAccess: every route declares its access rule where it is
// registered; only /healthz and the dashboard page are open, a shop's
// reads need that shop, POST the shops of its events, /metrics every shop.
func TestRouteAccess(t *testing.T) {
	a := &api{log: slog.New(slog.DiscardHandler), metrics: newMetrics()}
	want := map[string]access{
		"POST /v1/events":                        accessBodyShops,
		"GET /v1/shops/{shop}/skus":              accessPathShop,
		"GET /v1/shops/{shop}/skus/{sku}":        accessPathShop,
		"GET /v1/shops/{shop}/skus/{sku}/events": accessPathShop,
		"GET /v1/shops/{shop}/alerts":            accessPathShop,
		"GET /v1/shops/{shop}/live":              accessPathShop,
		"GET /v1/shops/{shop}":                   accessPathShop,
		"GET /v1/shops/{shop}/sync":              accessPathShop,
		"GET /healthz":                           accessOpen,
		"GET /{$}":                               accessOpen,
		"GET /metrics":                           accessAllShops,
	}
	routes := a.routes()
	if len(routes) != len(want) {
		t.Errorf("%d routes, want %d", len(routes), len(want))
	}
	for _, rt := range routes {
		if got, ok := want[rt.pattern]; !ok || got != rt.access {
			t.Errorf("route %s: access %d, want %d", rt.pattern, rt.access, got)
		}
		if (rt.access == accessBodyShops) != (rt.events != nil) || (rt.events == nil) == (rt.handler == nil) {
			t.Errorf("route %s: a route of accessBodyShops has events, every other a handler", rt.pattern)
		}
	}
}

// TestUnmatchedNeedsToken: a request no route matches needs a known
// token, whatever its shops, and then gets 404 or 405.
func TestUnmatchedNeedsToken(t *testing.T) {
	guard, err := parseTokens(strings.NewReader(tokenA+" shop-a\n"), "tokens")
	if err != nil {
		t.Fatal(err)
	}
	a := &api{log: slog.New(slog.DiscardHandler)}
	h := a.handler(guard)
	for _, tc := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/v1/shops/shop-a/nothing", "", 401},
		{"GET", "/v1/shops/shop-a/nothing", tokenA, 404},
		{"GET", "/v1/shops/shop-b/nothing", tokenA, 404},
		{"GET", "/nothing", tokenA, 404},
		{"DELETE", "/v1/events", "", 401},
		{"DELETE", "/v1/events", tokenA, 405},
		{"POST", "/healthz", tokenA, 405},
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s %s with token %t: %d, want %d", tc.method, tc.path, tc.token != "", rec.Code, tc.want)
		}
		if rec.Code == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s: 401 without WWW-Authenticate", tc.method, tc.path)
		}
	}
}
