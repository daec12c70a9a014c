package main

import (
	_ "embed"
	"net/http"
)

// dashboardHTML is the live dashboard: one file, no build step.
//
//go:embed web/index.html
var dashboardHTML []byte

// serveDashboard serves the live dashboard page at /.
func serveDashboard(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(dashboardHTML)
}
