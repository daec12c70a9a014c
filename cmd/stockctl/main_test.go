package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// ledgerd is the real service binary, built once for the package's tests.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain removes the ledgerd binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// startLedgerd builds and runs the real ledgerd (embedded NATS, memory read
// model) on free ports and returns its HTTP address and its NATS URL. It
// stops with the test.
func startLedgerd(t *testing.T) (string, string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "stockctl-test-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ledgerd")
		out, err := exec.Command("go", "build", "-o", binPath, "../ledgerd").CombinedOutput()
		if err != nil {
			buildErr = &buildError{err, out}
		}
	})
	if buildErr != nil {
		t.Fatalf("build ledgerd: %v", buildErr)
	}
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(binPath)
	cmd.Env = append(os.Environ(), "LEDGER_HTTP_ADDR="+httpAddr, "LEDGER_NATS_LISTEN="+natsAddr,
		"LEDGER_DATA_DIR="+t.TempDir(), "NATS_URL=", "DATABASE_URL=", "LEDGER_SELLOUT_SOON_MINUTES=0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "level=ERROR") {
				t.Log("ledgerd:", sc.Text())
			}
		}
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	base := "http://" + httpAddr
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base, "nats://" + natsAddr
			}
		}
		select {
		case <-done:
			t.Fatal("ledgerd exited while starting")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("ledgerd not healthy within 60s")
		}
	}
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return e.err.Error() + ": " + string(e.out) }

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ctl runs stockctl against base with stdin and returns its output and error.
func ctl(t *testing.T, base, stdin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	env := func(k string) string {
		if k == "STOCKCTL_ADDR" {
			return base
		}
		return ""
	}
	err := run(t.Context(), args, env, strings.NewReader(stdin), &out)
	return out.String(), err
}

func mustCtl(t *testing.T, base, stdin string, args ...string) string {
	t.Helper()
	out, err := ctl(t, base, stdin, args...)
	if err != nil {
		t.Fatalf("stockctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestSendContractV2 sends the events of contract v2 by flags: a line
// shipped in part by waybill, a return with a unit restocked, a receipt
// sent twice (applied once), a safety stock; and reads the figures back.
func TestSendContractV2(t *testing.T) {
	base, _ := startLedgerd(t)
	send := func(args ...string) {
		mustCtl(t, base, "", append([]string{"send", "-shop", "shop-v2", "-sku", "mat"}, args...)...)
	}
	send("-type", "listing", "-title", "Mat", "-price-fen", "4500", "-stock", "10", "-sales-form", "spot", "-ship-within-hours", "48")
	send("-type", "sale", "-order-id", "o1", "-parent-order-id", "p1", "-qty", "3", "-unit-price-fen", "4500", "-ship-by", time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	send("-type", "shipment", "-order-id", "o1", "-qty", "2", "-waybill", "SF-1")
	send("-type", "return", "-order-id", "o1", "-qty", "1", "-return-id", "RT-1", "-restocked", "1")
	send("-type", "restock", "-qty", "2", "-receipt-id", "GR-1")
	send("-type", "restock", "-qty", "2", "-receipt-id", "GR-1") // a duplicate: not stored
	send("-type", "safety_stock_set", "-qty", "4")
	out := mustCtl(t, base, "", "sku", "shop-v2", "mat", "-min-seq", "6")
	// on hand 10 − 2 shipped + 1 returned + 2 received = 11; 1 committed;
	// sellable 11 − 1 − 4 = 6.
	for _, want := range []string{"on hand  *11\n", "committed  *1\n", "safety stock  *4\n", "sellable \\(platform should show\\)  *6\n", "listed \\(platform\\)  *7\n"} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("sku after the v2 events: want %q in\n%s", want, out)
		}
	}
}

// TestStockctl drives every command against the running service.
func TestStockctl(t *testing.T) {
	base, _ := startLedgerd(t)
	const shop = "shop-ctl"

	// Send by flags.
	out := mustCtl(t, base, "", "send", "-type", "listing", "-shop", shop, "-sku", "tea", "-title", "Green tea",
		"-price-fen", "3000", "-stock", "5", "-sales-form", "spot", "-ship-within-hours", "48")
	if !strings.Contains(out, "1 events, last seq 1") {
		t.Errorf("send by flags: %s", out)
	}
	// A batch from stdin: an array and JSON lines alike.
	batch := `[{"type":"sale","shop":"shop-ctl","sku":"tea","order_id":"t1","qty":4,"unit_price_fen":3000}]
{"type":"sale","shop":"shop-ctl","sku":"tea","order_id":"t2","qty":3,"unit_price_fen":3000}
{"type":"sale","shop":"shop-ctl","sku":"tea","order_id":"t1","qty":4,"unit_price_fen":3000}`
	out = mustCtl(t, base, batch, "send", "-f", "-", "-json")
	var sent struct {
		Events []struct {
			Seq       uint64 `json:"seq"`
			Duplicate bool   `json:"duplicate"`
		} `json:"events"`
		LastSeq uint64 `json:"last_seq"`
	}
	if err := json.Unmarshal([]byte(out), &sent); err != nil {
		t.Fatalf("send -json: %v: %s", err, out)
	}
	if len(sent.Events) != 3 || !sent.Events[2].Duplicate || sent.LastSeq != 3 {
		t.Errorf("send -f - -json = %+v; want 3 acks, the re-sent order a duplicate, last seq 3", sent)
	}
	// A file with a bad event: the service's error is shown as it is, nothing appended.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`[{"type":"restock","shop":"shop-ctl","sku":"tea","qty":2},{"type":"restock","shop":"shop-ctl","sku":"tea","qty":-1}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ctl(t, base, "", "send", "-f", bad)
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "event 1: qty") {
		t.Errorf("send of a bad batch: err %v; want the 400 naming event 1's qty", err)
	}
	_, err = ctl(t, base, "", "send", "-type", "sale", "-qty", "many")
	if err == nil || !strings.Contains(err.Error(), `-qty "many"`) {
		t.Errorf("send -qty many: err %v; want the flag named", err)
	}

	// The shop's stock as a table, the SKU, the alerts.
	out = mustCtl(t, base, "", "stock", shop, "-min-seq", "3")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "SKU") || !strings.Contains(lines[1], "tea") {
		t.Fatalf("stock table:\n%s", out)
	}
	if f := strings.Fields(lines[1]); f[3] != "0" || f[4] != "0" || f[5] != "-2" || f[11] != "¥27.00" {
		t.Errorf("stock row %q: want listed 0, sellable 0, real -2, at risk ¥27.00 (one 3-unit line unshipped: 30%% of ¥90)", lines[1])
	}
	out = mustCtl(t, base, "", "sku", shop, "tea", "-json")
	var v view
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Committed != 7 || v.OnHand != 5 {
		t.Errorf("sku -json: %+v (%v); want committed 7, on hand 5", v, err)
	}
	out = mustCtl(t, base, "", "alerts", shop)
	if !strings.Contains(out, "oversold") || !strings.Contains(out, "¥27.00") {
		t.Errorf("alerts table:\n%s", out)
	}
	out = mustCtl(t, base, "", "history", shop, "tea")
	if !strings.Contains(out, "listing") || strings.Count(out, "  sale  ") != 2 {
		t.Errorf("history: want the listing and two sales (the duplicate stored once):\n%s", out)
	}
	if _, err := ctl(t, base, "", "sku", shop, "nothing"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("sku of an unknown SKU: err %v, want the 404", err)
	}

	// follow prints alert changes as they happen.
	ctx, cancel := context.WithCancel(t.Context())
	var buf syncBuffer
	followed := make(chan error, 1)
	go func() {
		env := func(k string) string {
			if k == "STOCKCTL_ADDR" {
				return base
			}
			return ""
		}
		followed <- run(ctx, []string{"follow", shop}, env, strings.NewReader(""), &buf)
	}()
	waitOutput(t, &buf, "following the live feed")
	// set-zero: stop selling now.
	out = mustCtl(t, base, "", "set-zero", shop, "tea")
	if !strings.Contains(out, "1 events") {
		t.Errorf("set-zero: %s", out)
	}
	mustCtl(t, base, "", "send", "-type", "restock", "-shop", shop, "-sku", "tea", "-qty", "10")
	waitOutput(t, &buf, "oversold tea resolved")
	cancel()
	if err := <-followed; err != nil {
		t.Errorf("follow ended with %v", err)
	}
	out = mustCtl(t, base, "", "sku", shop, "tea")
	if !regexp.MustCompile(`(?m)^listed \(platform\)\s+0$`).MatchString(out) {
		t.Errorf("after set-zero the platform stock is not 0:\n%s", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitOutput(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output has no %q within 15s:\n%s", want, b.String())
		}
		<-time.After(20 * time.Millisecond)
	}
}
