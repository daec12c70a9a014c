package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scenario is one acceptance story: HTTP calls, then the state the read API
// must show (see ../shared/scenarios/README.md).
type scenario struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Steps       []struct {
		Post         json.RawMessage `json:"post"`
		PostRaw      *string         `json:"post_raw"`
		ExpectStatus int             `json:"expect_status"`
		Field        string          `json:"field"`
		Why          string          `json:"why"`
	} `json:"steps"`
	Expect struct {
		SKUs              map[string]map[string]any `json:"skus"`
		MissingSKUs       []string                  `json:"missing_skus"`
		Alerts            []map[string]any          `json:"alerts"`
		NoOtherOpenAlerts bool                      `json:"no_other_open_alerts"`
	} `json:"expect"`
}

// scenarioFiles lists the shared acceptance scenarios (when ../shared exists
// beside the repository) and the project's own in testdata/scenarios.
func scenarioFiles(t *testing.T) []string {
	t.Helper()
	root := repoRoot(t)
	var files []string
	shared := filepath.Join(root, "..", "shared", "scenarios")
	for _, dir := range []string{shared, filepath.Join(shared, "v2"), filepath.Join(root, "testdata", "scenarios")} {
		matches, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, matches...)
	}
	if len(files) == 0 {
		t.Fatal("no scenario files found in ../shared/scenarios or testdata/scenarios")
	}
	return files
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

func loadScenario(t *testing.T, path string) scenario {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var sc scenario
	if err := json.Unmarshal(data, &sc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return sc
}

var relTime = regexp.MustCompile(`^now([+-])(\d+)([mhd])$`)

// resolveTimes rewrites every string value of the form now±N(m|h|d),
// whatever its field (at, deliver_by, ship_by…), as RFC 3339 relative to now.
func resolveTimes(t *testing.T, v any, now time.Time) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			s, ok := val.(string)
			if ok {
				if m := relTime.FindStringSubmatch(s); m != nil {
					n, _ := strconv.Atoi(m[2])
					unit := map[string]time.Duration{"m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[m[3]]
					d := time.Duration(n) * unit
					if m[1] == "-" {
						d = -d
					}
					x[k] = now.Add(d).UTC().Format(time.RFC3339)
				}
				continue
			}
			x[k] = resolveTimes(t, val, now)
		}
	case []any:
		for i := range x {
			x[i] = resolveTimes(t, x[i], now)
		}
	}
	return v
}

// runScenario plays one scenario against the service at base.
func runScenario(t *testing.T, base string, sc scenario) {
	t.Helper()
	now := time.Now()
	var lastSeq uint64
	for i, step := range sc.Steps {
		var body []byte
		if step.PostRaw != nil {
			body = []byte(*step.PostRaw)
		} else {
			var v any
			if err := json.Unmarshal(step.Post, &v); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			body, _ = json.Marshal(resolveTimes(t, v, now))
		}
		status, resp := do(t, http.MethodPost, base+"/v1/events", body)
		if status != step.ExpectStatus {
			t.Fatalf("step %d (%s): status %d, want %d; body %s", i, step.Why, status, step.ExpectStatus, resp)
		}
		if step.Field != "" && !bytes.Contains(resp, []byte(`"field":"`+step.Field+`"`)) {
			t.Errorf("step %d: error body does not name field %q: %s", i, step.Field, resp)
		}
		if status == http.StatusAccepted {
			var r postEventsResponse
			if err := json.Unmarshal(resp, &r); err != nil {
				t.Fatalf("step %d: %v: %s", i, err, resp)
			}
			lastSeq = max(lastSeq, r.LastSeq)
		}
	}
	shop := scenarioShop(t, sc)
	for sku, want := range sc.Expect.SKUs {
		status, resp := do(t, http.MethodGet, fmt.Sprintf("%s/v1/shops/%s/skus/%s?min_seq=%d", base, shop, sku, lastSeq), nil)
		if status != http.StatusOK {
			t.Fatalf("GET sku %s: status %d: %s", sku, status, resp)
		}
		var got map[string]any
		if err := json.Unmarshal(resp, &got); err != nil {
			t.Fatal(err)
		}
		for field, w := range want {
			if !sameJSON(got[field], w) {
				t.Errorf("sku %s: %s = %v, want %v (view %s)", sku, field, got[field], w, resp)
			}
		}
	}
	for _, sku := range sc.Expect.MissingSKUs {
		status, resp := do(t, http.MethodGet, fmt.Sprintf("%s/v1/shops/%s/skus/%s?min_seq=%d", base, shop, sku, lastSeq), nil)
		if status != http.StatusNotFound {
			t.Errorf("sku %s: status %d, want 404: %s", sku, status, resp)
		}
	}
	status, resp := do(t, http.MethodGet, fmt.Sprintf("%s/v1/shops/%s/alerts?state=all&min_seq=%d", base, shop, lastSeq), nil)
	if status != http.StatusOK {
		t.Fatalf("GET alerts: status %d: %s", status, resp)
	}
	var alerts struct {
		Alerts []map[string]any `json:"alerts"`
	}
	if err := json.Unmarshal(resp, &alerts); err != nil {
		t.Fatal(err)
	}
	matched := make([]bool, len(alerts.Alerts))
	for _, want := range sc.Expect.Alerts {
		found := false
		for i, got := range alerts.Alerts {
			if matches(got, want) {
				found, matched[i] = true, true
				break
			}
		}
		if !found {
			t.Errorf("no alert matches %v; alerts: %s", want, resp)
		}
	}
	if sc.Expect.NoOtherOpenAlerts {
		for i, got := range alerts.Alerts {
			if got["state"] == "open" && !matched[i] {
				t.Errorf("unexpected open alert %v", got)
			}
		}
	}
}

// scenarioShop is the one shop a scenario's events name.
func scenarioShop(t *testing.T, sc scenario) string {
	t.Helper()
	shops := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if s, ok := x["shop"].(string); ok {
				shops[s] = true
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	for _, step := range sc.Steps {
		var v any
		if json.Unmarshal(step.Post, &v) == nil {
			walk(v)
		}
	}
	if len(shops) != 1 {
		names := make([]string, 0, len(shops))
		for s := range shops {
			names = append(names, s)
		}
		sort.Strings(names)
		t.Fatalf("scenario %s names shops %v: the format reads one shop", sc.Name, names)
	}
	for s := range shops {
		return s
	}
	return ""
}

func matches(got, want map[string]any) bool {
	for k, w := range want {
		if !sameJSON(got[k], w) {
			return false
		}
	}
	return true
}

// sameJSON compares two decoded JSON values.
func sameJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func do(t *testing.T, method, url string, body []byte) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

func TestScenariosMemory(t *testing.T) {
	for _, path := range scenarioFiles(t) {
		sc := loadScenario(t, path)
		t.Run(strings.TrimSuffix(filepath.Base(path), ".json"), func(t *testing.T) {
			t.Parallel()
			svc := startTestService(t, "")
			runScenario(t, "http://"+svc.httpAddr, sc)
		})
	}
}

func TestScenariosPostgres(t *testing.T) {
	for _, path := range scenarioFiles(t) {
		sc := loadScenario(t, path)
		t.Run(strings.TrimSuffix(filepath.Base(path), ".json"), func(t *testing.T) {
			t.Parallel()
			svc := startTestService(t, testDatabaseURL(t))
			runScenario(t, "http://"+svc.httpAddr, sc)
		})
	}
}
