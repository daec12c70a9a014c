package main

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"

	"stockledger/ledger"
)

// Token bounds.
const (
	// tokenLenMin refuses guessable tokens: 32 characters, such as the hex
	// of 16 random bytes (openssl rand -hex 16). A file with a shorter
	// token is refused at start.
	tokenLenMin = 32
	// tokenLenMax bounds one token and so the work of one comparison. A
	// file with a longer token is refused at start; a longer token
	// presented is unknown (401).
	tokenLenMax = 256
	// tokensMax bounds the tokens of one file; a file with more is refused
	// at start.
	tokensMax = 10_000
	// allShops in a token file's shop list grants every shop.
	allShops = "*"
)

// grant is one token's scope. The token itself is kept only as its SHA-256,
// so that a comparison takes the same time whatever the input and no copy of
// the secret stays in memory.
type grant struct {
	sum   [sha256.Size]byte
	all   bool
	shops map[string]bool
}

func (g *grant) allows(shop string) bool { return g.all || g.shops[shop] }

// auth checks bearer tokens. A nil *auth lets every request through: ledgerd
// runs so only on loopback without a token file.
type auth struct {
	grants []grant
}

// loadAuth reads LEDGER_TOKENS_FILE. Without one, ledgerd must listen on
// loopback only; listening beyond it without tokens is refused.
func loadAuth(cfg config) (*auth, error) {
	if cfg.TokensFile == "" {
		if !isLoopback(cfg.HTTPAddr) {
			return nil, fmt.Errorf("LEDGER_HTTP_ADDR %s listens beyond loopback: set LEDGER_TOKENS_FILE to a file of bearer tokens and their shops (see README), or listen on 127.0.0.1", cfg.HTTPAddr)
		}
		return nil, nil
	}
	f, err := os.Open(cfg.TokensFile)
	if err != nil {
		return nil, fmt.Errorf("LEDGER_TOKENS_FILE: %w", err)
	}
	defer f.Close()
	return parseTokens(f, cfg.TokensFile)
}

// parseTokens reads lines "<token> <shop>[,<shop>...]" ("*" for every shop);
// blank lines and lines starting with # are skipped. Errors name the line,
// never the token.
func parseTokens(r io.Reader, name string) (*auth, error) {
	a := &auth{}
	seen := map[[sha256.Size]byte]bool{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, fmt.Errorf("LEDGER_TOKENS_FILE %s line %d: must be a token, a space and a comma-separated list of shops (or *)", name, line)
		}
		tok, list := fields[0], fields[1]
		if len(tok) < tokenLenMin || len(tok) > tokenLenMax {
			return nil, fmt.Errorf("LEDGER_TOKENS_FILE %s line %d: a token must be %d to %d characters", name, line, tokenLenMin, tokenLenMax)
		}
		g := grant{sum: sha256.Sum256([]byte(tok)), shops: map[string]bool{}}
		if seen[g.sum] {
			return nil, fmt.Errorf("LEDGER_TOKENS_FILE %s line %d: the token of an earlier line again", name, line)
		}
		seen[g.sum] = true
		for _, shop := range strings.Split(list, ",") {
			if shop == allShops {
				g.all = true
				continue
			}
			if err := (&ledger.Event{Shop: shop}).Validate(); err != nil && strings.Contains(err.Error(), "shop") {
				for _, fe := range ledger.FieldErrors(err) {
					if fe.Field == "shop" {
						return nil, fmt.Errorf("LEDGER_TOKENS_FILE %s line %d: shop %s: %s", name, line, fe.Value, fe.Rule)
					}
				}
			}
			g.shops[shop] = true
		}
		a.grants = append(a.grants, g)
		if len(a.grants) > tokensMax {
			return nil, fmt.Errorf("LEDGER_TOKENS_FILE %s: more than %d tokens", name, tokensMax)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("LEDGER_TOKENS_FILE %s: %w", name, err)
	}
	if len(a.grants) == 0 {
		return nil, fmt.Errorf("LEDGER_TOKENS_FILE %s: no tokens", name)
	}
	return a, nil
}

// logMode says at start whether HTTP requests need a token (never which).
func (a *auth) logMode(log *slog.Logger) {
	if a == nil {
		log.Info("HTTP tokens: off (loopback only; set LEDGER_TOKENS_FILE to require them)")
		return
	}
	log.Info("HTTP tokens: required", "tokens", len(a.grants))
}

// isLoopback reports whether a listen address accepts loopback connections
// only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// lookup finds the grant of a presented token. It compares against every
// grant without stopping early, in constant time per grant.
func (a *auth) lookup(token string) *grant {
	if token == "" || len(token) > tokenLenMax {
		return nil
	}
	sum := sha256.Sum256([]byte(token))
	var found *grant
	for i := range a.grants {
		if subtle.ConstantTimeCompare(sum[:], a.grants[i].sum[:]) == 1 {
			found = &a.grants[i]
		}
	}
	return found
}

// queryToken is the query parameter a GET may carry its token in.
const queryToken = "access_token"

// errNoToken answers a request without a token ledgerd knows.
var errNoToken = &httpError{status: http.StatusUnauthorized, detail: "Authorization: a bearer token is required (LEDGER_TOKENS_FILE)",
	fields: []*ledger.FieldError{{Field: "Authorization", Rule: "must be Bearer and a token ledgerd knows"}}}

// forbidden answers a token not granted shop.
func forbidden(shop string) error {
	return &httpError{status: http.StatusForbidden, detail: fmt.Sprintf("shop %s: this token is not granted it", shop),
		fields: []*ledger.FieldError{{Field: "shop", Value: shop, Rule: "the token must be granted this shop"}}}
}

// token returns the grant of the request's bearer token, nil without a
// known one. A GET may carry its token as the access_token query
// parameter, for browsers' EventSource. The token is never logged nor
// echoed.
func (a *auth) token(r *http.Request) *grant {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok && r.Method == http.MethodGet && r.URL.Query().Has(queryToken) {
		// A browser's EventSource cannot set headers: reads may carry
		// the token in the query (RFC 6750 §2.3). Never for writes.
		token, ok = r.URL.Query().Get(queryToken), true
	}
	if !ok {
		return nil
	}
	return a.lookup(strings.TrimSpace(token))
}

// protect serves rt behind its access rule (see access): 401 without a
// known token, 403 with a token not granted what the rule asks; a refusal
// is not recorded in the metrics. A route of accessBodyShops gets its body
// decoded once, here, and the guard checks the shops of those events. A
// nil *auth checks nothing: ledgerd runs so only on loopback without a
// token file.
func (a *auth) protect(rt route, m *metrics, log *slog.Logger) http.Handler {
	if rt.access == accessBodyShops {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			g, err := a.check(r, rt.access)
			if err == nil {
				b := readBatch(w, r)
				if err = a.checkShops(g, b); err == nil {
					m.instrument(errorsTo(log, func(w http.ResponseWriter, r *http.Request) error { return rt.events(w, r, b) })).ServeHTTP(w, r)
					return
				}
			}
			a.refuse(w, log, r, err)
		})
	}
	h := m.instrument(rt.handler)
	if a == nil || rt.access == accessOpen {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := a.check(r, rt.access); err != nil {
			a.refuse(w, log, r, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// check finds the request's grant and checks the access rule as far as the
// request line tells (the shops of a body are checked by checkShops).
func (a *auth) check(r *http.Request, rule access) (*grant, error) {
	if a == nil || rule == accessOpen {
		return nil, nil
	}
	g := a.token(r)
	switch {
	case g == nil:
		return nil, errNoToken
	case rule == accessPathShop && !g.allows(r.PathValue("shop")):
		return nil, forbidden(r.PathValue("shop"))
	case rule == accessAllShops && !g.all:
		return nil, forbidden("every shop")
	}
	return g, nil
}

// checkShops checks that g is granted every shop the events of b name. A
// body that does not decode is passed on: the handler refuses it and
// appends nothing.
func (a *auth) checkShops(g *grant, b batch) error {
	if a == nil || b.err != nil {
		return nil
	}
	for _, e := range b.events {
		if !g.allows(e.Shop) {
			return forbidden(e.Shop)
		}
	}
	return nil
}

// refuse answers a refused request.
func (a *auth) refuse(w http.ResponseWriter, log *slog.Logger, r *http.Request, err error) {
	if err == errNoToken {
		w.Header().Set("WWW-Authenticate", `Bearer realm="stockledger"`)
	}
	writeError(w, log, r, err)
}
