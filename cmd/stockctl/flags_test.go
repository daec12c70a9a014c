package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"stockledger/ledger/transport"
)

// runNoEnv runs stockctl without STOCKCTL_ADDR.
func runNoEnv(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	err := run(t.Context(), args, func(string) string { return "" }, strings.NewReader(""), &out)
	return out.String(), err
}

// TestHelp: stockctl --help, -h, -help and help print the usage and
// succeed; a command's -h lists its flags and succeeds.
func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "-help", "help", "--h"} {
		out, err := runNoEnv(t, arg)
		if err != nil || out != usage {
			t.Errorf("stockctl %s: err %v, output %q; want the usage and no error", arg, err, out)
		}
	}
	out, err := runNoEnv(t, "stock", "-h")
	if err != nil || !strings.Contains(out, "-min-seq") {
		t.Errorf("stockctl stock -h: err %v, output %q; want its flags and no error", err, out)
	}
	if _, err := runNoEnv(t, "--bogus", "stock", "s"); err == nil || !strings.Contains(err.Error(), "-bogus") {
		t.Errorf("stockctl --bogus: err %v; want the flag named", err)
	}
	if out, err := runNoEnv(t); err == nil || out != usage {
		t.Errorf("stockctl without a command: err %v, output %q; want the usage and an error", err, out)
	}
}

// fakeLedgerd answers GET /v1/shops/{shop}/skus with one SKU and records
// the paths asked.
type fakeLedgerd struct {
	mu    sync.Mutex
	paths []string
}

func (f *fakeLedgerd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.paths = append(f.paths, r.URL.Path)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"shop":"shop-g","skus":[{"shop":"shop-g","sku":"mug","status":"ok","sales_form":"spot","listed":3}],"applied_seq":7}`))
}

func (f *fakeLedgerd) asked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.paths...)
}

// TestGlobalFlagsBeforeCommand: -addr and -json before the command apply
// to it, as they do after it; a command's own -addr wins.
func TestGlobalFlagsBeforeCommand(t *testing.T) {
	fake := &fakeLedgerd{}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	other := &fakeLedgerd{}
	srv2 := httptest.NewServer(other)
	defer srv2.Close()

	out, err := runNoEnv(t, "-addr", srv.URL, "stock", "shop-g")
	if err != nil || !strings.Contains(out, "mug") || !strings.HasPrefix(out, "SKU") {
		t.Errorf("stockctl -addr URL stock shop-g: err %v, output %q; want the table from URL", err, out)
	}
	out, err = runNoEnv(t, "-json", "-addr="+srv.URL, "stock", "shop-g")
	var r struct {
		AppliedSeq uint64 `json:"applied_seq"`
	}
	if err != nil || json.Unmarshal([]byte(out), &r) != nil || r.AppliedSeq != 7 {
		t.Errorf("stockctl -json -addr=URL stock shop-g: err %v, output %q; want the JSON answer", err, out)
	}
	if _, err = runNoEnv(t, "-addr", srv.URL, "stock", "shop-g", "-addr", srv2.URL); err != nil {
		t.Errorf("stockctl -addr A stock shop-g -addr B: %v", err)
	}
	if got := fake.asked(); len(got) != 2 || got[0] != "/v1/shops/shop-g/skus" {
		t.Errorf("the server of -addr before the command was asked %v; want /v1/shops/shop-g/skus twice", got)
	}
	if got := other.asked(); len(got) != 1 {
		t.Errorf("the server of -addr after the command was asked %v; want once (it wins)", got)
	}
}

// TestHistoryShowsRefused: an event published raw that the projector
// refuses is in the history marked with the reason, in the table and in
// -json.
func TestHistoryShowsRefused(t *testing.T) {
	base, natsURL := startLedgerd(t)
	const shop = "shop-ref"
	mustCtl(t, base, "", "send", "-type", "listing", "-shop", shop, "-sku", "cup", "-title", "Cup",
		"-price-fen", "1000", "-stock", "5", "-sales-form", "spot", "-ship-within-hours", "24")
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A feed publishing without the ledger's client: nothing checks qty
	// before the stream, the projector refuses it.
	poison := `{"type":"sale","shop":"shop-ref","sku":"cup","order_id":"bad-1","qty":-5,"unit_price_fen":1000}`
	if _, err := nc.Request(transport.EventSubject(shop, "cup"), []byte(poison), 5*time.Second); err != nil {
		t.Fatalf("publish the poison: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var out string
	for {
		out = mustCtl(t, base, "", "history", shop, "cup")
		if strings.Contains(out, "REFUSED") || time.Now().After(deadline) {
			break
		}
		<-time.After(50 * time.Millisecond)
	}
	lines := strings.Split(out, "\n")
	i := 0
	for i < len(lines) && !strings.Contains(lines[i], "bad-1") {
		i++
	}
	if i+1 >= len(lines) || !strings.Contains(lines[i+1], "REFUSED") || !strings.Contains(lines[i+1], "qty") ||
		!strings.Contains(out, "1 of these events refused") {
		t.Fatalf("history: want the sale bad-1 marked refused with a reason naming qty:\n%s", out)
	}
	if strings.Count(out, "REFUSED") != 1 {
		t.Errorf("history: only the poison is refused, the listing is not:\n%s", out)
	}
	js := mustCtl(t, base, "", "-json", "history", shop, "cup")
	var r struct {
		Events []historyEntry `json:"events"`
	}
	if err := json.Unmarshal([]byte(js), &r); err != nil || len(r.Events) != 2 || r.Events[0].Refused != "" || r.Events[1].Refused == "" {
		t.Errorf("history -json: %v; want the listing and the refused sale with its reason:\n%s", err, js)
	}
}
