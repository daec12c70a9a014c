package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stockledger/projections"
)

// fakeProgress is a projection whose applied sequence the test sets.
// waiting, when set, hears of every WaitApplied that begins.
type fakeProgress struct {
	applied atomic.Uint64
	waiting chan struct{}
}

func (p *fakeProgress) Applied() uint64      { return p.applied.Load() }
func (p *fakeProgress) Err() error           { return nil }
func (p *fakeProgress) DeadLettered() uint64 { return 0 }

func (p *fakeProgress) WaitApplied(ctx context.Context, seq uint64) error {
	if p.waiting != nil {
		select {
		case p.waiting <- struct{}{}:
		default:
		}
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for p.applied.Load() < seq {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// fakeReader is a read model of one SKU whose view reflects every event up
// to committed. A read calls during, if set, after it took its state: a
// commit landing while the answer is on its way.
type fakeReader struct {
	mu        sync.Mutex
	committed uint64
	fail      error
	during    func()
}

func (f *fakeReader) view() (projections.View, error) {
	f.mu.Lock()
	v, err := projections.View{Shop: "s", SKU: "k", LastSeq: f.committed, OnHand: int64(f.committed)}, f.fail
	during := f.during
	f.mu.Unlock()
	if during != nil {
		during()
	}
	return v, err
}

func (f *fakeReader) SKU(context.Context, string, string) (projections.View, error) { return f.view() }
func (f *fakeReader) SKUs(context.Context, string) ([]projections.View, error) {
	v, err := f.view()
	return []projections.View{v}, err
}
func (f *fakeReader) Alerts(context.Context, projections.AlertFilter) ([]projections.Alert, error) {
	_, err := f.view()
	return nil, err
}
func (f *fakeReader) OpenAlertTotals(context.Context) (map[projections.AlertKind]projections.AlertTotal, error) {
	return nil, nil
}
func (f *fakeReader) Ping(context.Context) error { return f.fail }
func (f *fakeReader) ShopHealth(context.Context, string, time.Time) (projections.ShopHealth, error) {
	return projections.ShopHealth{}, f.fail
}

// okProbe is a NATS that answers, its event stream at last.
type okProbe struct{ last uint64 }

func (p okProbe) EventLastSeq(context.Context) (uint64, error) { return p.last, nil }

// fakeAPI is the HTTP layer over a fake read model: reads, health, and
// the gate of a start at target.
func fakeAPI(t *testing.T, r *fakeReader, p *fakeProgress, target uint64) http.Handler {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	wait := &readWait{gate: newStartGate(p, target), progress: p}
	m := newStaleModel(r, p)
	hist := &historyAPI{log: log, progress: p, wait: wait}
	a := &api{log: log, history: hist,
		reads: &readAPI{log: log, model: m, wait: wait, history: hist},
		live:  &liveAPI{log: log, model: m, wait: wait, stop: make(chan struct{})},
		health: &healthAPI{log: log, probes: newProbeCache(okProbe{last: target}, r), projection: p, gate: wait.gate,
			durability: syncInterval, maxLag: DefaultHealthMaxLag}}
	return a.handler(nil)
}

// get serves one GET and returns the status, the applied header and the
// body.
func get(t *testing.T, h http.Handler, path string) (int, uint64, http.Header, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Body)
	applied, _ := strconv.ParseUint(rec.Header().Get(headerApplied), 10, 64)
	return rec.Code, applied, rec.Header(), body
}

// TestAppliedSeqIsReadBeforeTheStore: a commit that lands between the
// store read and the answer must not raise Ledger-Applied-Seq above what
// the answer reflects (it was read after the store read before). The
// header and applied_seq are the sequence read before the store read, and
// a stale answer served while the store fails keeps the sequence of its
// own read.
func TestAppliedSeqIsReadBeforeTheStore(t *testing.T) {
	p := &fakeProgress{}
	r := &fakeReader{committed: 10}
	p.applied.Store(10)
	r.during = func() { p.applied.Add(5) } // the projector commits while the answer is made
	h := fakeAPI(t, r, p, 0)
	for _, path := range []string{"/v1/shops/s/skus/k", "/v1/shops/s/skus", "/v1/shops/s/alerts"} {
		r.mu.Lock()
		r.committed = p.Applied()
		reflected := r.committed
		r.mu.Unlock()
		status, applied, _, body := get(t, h, path)
		if status != http.StatusOK || applied > reflected {
			t.Errorf("GET %s: %d, %s %d; the answer reflects only up to %d: %s", path, status, headerApplied, applied, reflected, body)
		}
		var list struct {
			AppliedSeq *uint64 `json:"applied_seq"`
		}
		if json.Unmarshal(body, &list) == nil && list.AppliedSeq != nil && *list.AppliedSeq != applied {
			t.Errorf("GET %s: applied_seq %d, header %d: want the same", path, *list.AppliedSeq, applied)
		}
	}

	// The store fails: the last answers come back with their own sequence.
	r.mu.Lock()
	r.during, r.fail = nil, errors.New("connection refused")
	r.mu.Unlock()
	p.applied.Store(1000)
	status, applied, _, body := get(t, h, "/v1/shops/s/skus/k")
	var v projections.View
	_ = json.Unmarshal(body, &v)
	if status != http.StatusOK || applied > v.LastSeq || applied == 0 {
		t.Errorf("stale GET sku: %d, header %d, last_seq %d: want the stale view with the sequence of its read", status, applied, v.LastSeq)
	}
	status, applied, _, body = get(t, h, "/v1/shops/s/skus")
	if status != http.StatusOK || applied >= 1000 || !strings.Contains(string(body), `"applied_seq":`+strconv.FormatUint(applied, 10)) {
		t.Errorf("stale GET skus: %d, header %d: %s; want the stale list with the sequence of its read", status, applied, body)
	}
}

// TestStartGate: while the read model is rebuilt, reads wait readWaitMax,
// then answer 503 with Retry-After naming the progress; /healthz says
// starting with the target; once the target is applied, reads are
// answered and /healthz is ok. Without a target (a read model that
// persists) nothing waits.
func TestStartGate(t *testing.T) {
	p := &fakeProgress{}
	p.applied.Store(50)
	h := fakeAPI(t, &fakeReader{committed: 50}, p, 100)

	status, _, _, body := get(t, h, "/healthz")
	var hl health
	_ = json.Unmarshal(body, &hl)
	if status != http.StatusServiceUnavailable || hl.Status != "starting" || hl.TargetSeq != 100 || hl.AppliedSeq != 50 {
		t.Errorf("/healthz while starting: %d %s; want 503 starting, target_seq 100, applied_seq 50", status, body)
	}
	paths := []string{"/v1/shops/s/skus", "/v1/shops/s/skus/k", "/v1/shops/s/alerts", "/v1/shops/s/skus/k/events",
		"/v1/shops/s/skus/k?as_of=2026-01-01T00:00:00Z", "/v1/shops/s/live"}
	var wg sync.WaitGroup
	began := time.Now()
	for _, path := range paths {
		wg.Go(func() {
			status, _, hdr, body := get(t, h, path)
			var pb problem
			_ = json.Unmarshal(body, &pb)
			if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(pb.Detail, "applied seq 50 of the 100") {
				t.Errorf("GET %s while starting: %d Retry-After %q %s; want 503 with Retry-After naming the progress", path, status, hdr.Get("Retry-After"), body)
			}
		})
	}
	wg.Wait()
	if took := time.Since(began); took < readWaitMax {
		t.Errorf("reads answered 503 after %s, before the wait of %s", took, readWaitMax)
	}

	// A read that arrives while starting is answered once the target is.
	answered := make(chan int)
	p.waiting = make(chan struct{}, 1)
	go func() {
		status, applied, _, _ := get(t, h, "/v1/shops/s/skus/k")
		if applied < 100 {
			t.Errorf("read after the start: %s %d, want ≥ 100", headerApplied, applied)
		}
		answered <- status
	}()
	<-p.waiting
	p.applied.Store(100)
	if status := <-answered; status != http.StatusOK {
		t.Errorf("read waiting while the target was reached: %d, want 200", status)
	}
	if status, _, _, body := get(t, h, "/healthz"); status != http.StatusOK || strings.Contains(string(body), "target_seq") {
		t.Errorf("/healthz after the start: %d %s; want 200 ok without target_seq", status, body)
	}

	// A read model that persists has no target: nothing waits.
	p0 := &fakeProgress{}
	if status, _, _, body := get(t, fakeAPI(t, &fakeReader{}, p0, 0), "/v1/shops/s/skus"); status != http.StatusOK {
		t.Errorf("read without a start target at applied 0: %d %s, want 200 at once", status, body)
	}
}

// readSample is one answered read: its header and the views it held.
type readSample struct {
	path    string
	applied uint64
	minSeq  uint64
	views   []projections.View
}

// readViews reads path and returns its sample; an error for anything but
// a 200 with views.
func readViews(url, path string, minSeq uint64) (readSample, error) {
	s := readSample{path: path, minSeq: minSeq}
	if minSeq > 0 {
		path += "?min_seq=" + strconv.FormatUint(minSeq, 10)
	}
	resp, err := http.Get(url + path)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return s, err
	}
	if resp.StatusCode != http.StatusOK {
		return s, errors.New(resp.Status + ": " + string(body))
	}
	if s.applied, err = strconv.ParseUint(resp.Header.Get(headerApplied), 10, 64); err != nil {
		return s, err
	}
	var list struct {
		SKUs []projections.View `json:"skus"`
	}
	if strings.HasSuffix(s.path, "/skus") {
		err = json.Unmarshal(body, &list)
		s.views = list.SKUs
		return s, err
	}
	var v projections.View
	err = json.Unmarshal(body, &v)
	s.views = []projections.View{v}
	return s, err
}

// TestAppliedSeqLowerBound checks what Ledger-Applied-Seq promises on the
// real service while events are posted: every event at or below the
// header is reflected in the answer. For each answered view (one SKU, or
// each SKU of the list), read with and without min_seq: its last_seq is at
// least that of the SKU's last event at or below the header, and its
// on_hand counts every restock at or below the header. (A view may reflect
// later events too: the header is not an upper bound.)
func TestAppliedSeqLowerBound(t *testing.T) {
	t.Run("memory", func(t *testing.T) { appliedSeqLowerBound(t, "") })
	t.Run("postgres", func(t *testing.T) { appliedSeqLowerBound(t, testDatabaseURL(t)) })
}

func appliedSeqLowerBound(t *testing.T, databaseURL string) {
	svc := startTestService(t, databaseURL)
	base := "http://" + svc.httpAddr
	// The writer posts at least roundsMin rounds, and goes on until the
	// readers answered readsMin reads or postingMax passed.
	const shop, skus, roundsMin, readers, readsMin, postingMax = "shop-lb", 4, 150, 2, 600, 30 * time.Second
	var listings []map[string]any
	for j := range skus {
		listings = append(listings, map[string]any{"type": "listing", "shop": shop, "sku": "sku-" + strconv.Itoa(j),
			"title": "T", "price_fen": 100, "stock": 0, "sales_form": "spot", "ship_within_hours": 24})
	}
	listed := postEvents(t, base, listings...)
	before, err := readViews(base, "/v1/shops/"+shop+"/skus", listed)
	if err != nil || len(before.views) != skus {
		t.Fatalf("SKUs after the listings: %v %+v", err, before)
	}

	var lastSeq, reads atomic.Uint64
	lastSeq.Store(listed)
	done := make(chan struct{})
	samples := make([][]readSample, readers)
	var wg sync.WaitGroup
	for i := range readers {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				default:
				}
				path, minSeq := "/v1/shops/"+shop+"/skus/sku-"+strconv.Itoa(n%skus), uint64(0)
				switch n % 3 {
				case 1:
					minSeq = lastSeq.Load()
				case 2:
					path = "/v1/shops/" + shop + "/skus"
				}
				s, err := readViews(base, path, minSeq)
				if err != nil {
					t.Errorf("GET %s: %v", path, err)
					return
				}
				samples[i] = append(samples[i], s)
				reads.Add(1)
			}
		})
	}
	restocks := map[string][]uint64{} // seqs of each SKU's restocks, ascending
	rounds := 0
	for deadline := time.Now().Add(postingMax); rounds < roundsMin || (reads.Load() < readsMin && time.Now().Before(deadline)); rounds++ {
		var batch []map[string]any
		for j := range skus {
			batch = append(batch, map[string]any{"type": "restock", "shop": shop, "sku": "sku-" + strconv.Itoa(j), "qty": 1})
		}
		body, _ := json.Marshal(batch)
		status, resp := do(t, http.MethodPost, base+"/v1/events", body)
		var r postEventsResponse
		if status != http.StatusAccepted || json.Unmarshal(resp, &r) != nil || len(r.Events) != skus {
			t.Fatalf("POST restocks: %d %s", status, resp)
		}
		for j, ack := range r.Events {
			sku := "sku-" + strconv.Itoa(j)
			restocks[sku] = append(restocks[sku], ack.Seq)
		}
		lastSeq.Store(r.LastSeq)
	}
	close(done)
	wg.Wait()

	onHand0, listedAt := map[string]int64{}, map[string]uint64{}
	for _, v := range before.views {
		onHand0[v.SKU], listedAt[v.SKU] = v.OnHand, v.LastSeq
	}
	checked, above := 0, 0
	for _, ss := range samples {
		for _, s := range ss {
			if s.applied < s.minSeq {
				t.Errorf("GET %s min_seq %d: %s %d below it", s.path, s.minSeq, headerApplied, s.applied)
			}
			for _, v := range s.views {
				last, n := listedAt[v.SKU], int64(0) // the SKU's last event at or below the header, and its restocks there
				for _, seq := range restocks[v.SKU] {
					if seq <= s.applied {
						last, n = seq, n+1
					}
				}
				if v.LastSeq < last || v.OnHand < onHand0[v.SKU]+n {
					t.Errorf("GET %s: %s %d but view %s has last_seq %d, on_hand %d; want every event ≤ %d reflected: last_seq ≥ %d, on_hand ≥ %d",
						s.path, headerApplied, s.applied, v.SKU, v.LastSeq, v.OnHand, s.applied, last, onHand0[v.SKU]+n)
				}
				if v.LastSeq > s.applied {
					above++
				}
				checked++
			}
		}
	}
	if checked == 0 {
		t.Fatal("no view was read while posting")
	}
	t.Logf("%d views checked in %d rounds of %d restocks; %d reflected events above the header (allowed)", checked, rounds, skus, above)
}
