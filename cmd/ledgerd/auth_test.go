package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger/transport"
)

const (
	tokenA     = "tok-a-0123456789abcdef0123456789abcdef"
	tokenB     = "tok-b-0123456789abcdef0123456789abcdef"
	tokenAdmin = "tok-admin-0123456789abcdef0123456789ab"
)

// lockedBuffer collects the service's log for inspection.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAuthScopesTokensToShops runs ledgerd with a token file: no token or an
// unknown one is 401, a token for shop A cannot write or read shop B (403),
// nothing refused is appended, /healthz stays open, and no token is logged.
func TestAuthScopesTokensToShops(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte("# token shops\n"+tokenA+" shop-a\n"+tokenB+" shop-b,shop-c\n"+tokenAdmin+" *\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	cfg := config{HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), NATSListen: "127.0.0.1:0", Sync: syncInterval,
		StreamBytes: 64 << 20, TokensFile: file}
	svc, err := start(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := svc.stop(); err != nil {
			t.Error(err)
		}
	}()
	base := "http://" + svc.httpAddr
	js, _ := jetstream.New(svc.nc)
	restock := func(shop string) string {
		return `{"type":"restock","shop":"` + shop + `","sku":"sku-1","qty":1}`
	}
	cases := []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"write without token", "POST", "/v1/events", "", restock("shop-a"), 401},
		{"write with unknown token", "POST", "/v1/events", tokenA + "x", restock("shop-a"), 401},
		{"write with a token's prefix", "POST", "/v1/events", tokenA[:20], restock("shop-a"), 401},
		{"write to another shop", "POST", "/v1/events", tokenA, restock("shop-b"), 403},
		{"batch reaching into another shop", "POST", "/v1/events", tokenA, "[" + restock("shop-a") + "," + restock("shop-b") + "]", 403},
		{"read another shop's skus", "GET", "/v1/shops/shop-b/skus", tokenA, "", 403},
		{"read another shop's alerts", "GET", "/v1/shops/shop-b/alerts", tokenA, "", 403},
		{"read another shop's history", "GET", "/v1/shops/shop-b/skus/sku-1/events", tokenA, "", 403},
		{"read without token", "GET", "/v1/shops/shop-a/skus", "", "", 401},
		{"write own shop", "POST", "/v1/events", tokenA, restock("shop-a"), 202},
		{"write own shops", "POST", "/v1/events", tokenB, "[" + restock("shop-b") + "," + restock("shop-c") + "]", 202},
		{"read own shop", "GET", "/v1/shops/shop-a/skus", tokenA, "", 200},
		{"admin reads any shop", "GET", "/v1/shops/shop-b/skus", tokenAdmin, "", 200},
		{"health without token", "GET", "/healthz", "", "", 200},
		{"dashboard page without token", "GET", "/", "", "", 200},
		{"read with the token in the query", "GET", "/v1/shops/shop-a/skus?access_token=" + tokenA, "", "", 200},
		{"read another shop with the token in the query", "GET", "/v1/shops/shop-b/skus?access_token=" + tokenA, "", "", 403},
		{"write with the token in the query", "POST", "/v1/events?access_token=" + tokenA, "", restock("shop-a"), 401},
		{"metrics without a token for every shop", "GET", "/metrics", tokenA, "", 403},
	}
	for _, tc := range cases {
		before := streamLastSeq(t, js, transport.EventStream)
		req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, resp.StatusCode, body, tc.want)
		}
		if strings.Contains(string(body), "tok-") {
			t.Errorf("%s: the answer echoes a token: %s", tc.name, body)
		}
		if after := streamLastSeq(t, js, transport.EventStream); tc.want != 202 && after != before {
			t.Errorf("%s: refused with %d but the stream went from %d to %d", tc.name, resp.StatusCode, before, after)
		}
	}
	if strings.Contains(logs.String(), "tok-") {
		t.Errorf("a token reached the log:\n%s", logs.String())
	}
}

func TestAuthRequiredBeyondLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:8080", ":8080", "192.0.2.1:8080", "[::]:8080"} {
		if _, err := loadAuth(config{HTTPAddr: addr}); err == nil || !strings.Contains(err.Error(), "LEDGER_TOKENS_FILE") {
			t.Errorf("HTTP on %s without tokens: %v, want a refusal naming LEDGER_TOKENS_FILE", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:8080", "localhost:8080", "[::1]:8080"} {
		if a, err := loadAuth(config{HTTPAddr: addr}); err != nil || a != nil {
			t.Errorf("HTTP on %s without tokens: %v, want open loopback", addr, err)
		}
	}
}

func TestParseTokensRefuses(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"short token", "abc shop-a\n", "32 to 256"},
		{"no shops", tokenA + "\n", "line 1"},
		{"bad shop", tokenA + " shop.a\n", "shop"},
		{"same token twice", tokenA + " shop-a\n" + tokenA + " shop-b\n", "line 2"},
		{"empty", "# nothing\n", "no tokens"},
	} {
		_, err := parseTokens(strings.NewReader(tc.text), "tokens")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "tok-") {
			t.Errorf("%s: the error shows the token: %v", tc.name, err)
		}
	}
}
