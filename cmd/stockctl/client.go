package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client bounds.
const (
	// requestTimeout bounds one request (follow has none: it streams);
	// past it the command fails.
	requestTimeout = 30 * time.Second
	// responseBytesMax bounds a response body read into memory; a longer
	// one is cut there and fails to decode.
	responseBytesMax = 64 << 20
	// inputBytesMax bounds the events file or stdin of send; a longer
	// input is refused before anything is sent.
	inputBytesMax = 256 << 20
	// followRetryMax bounds the reconnects of follow in a row without an
	// event in between; then follow gives up with an error.
	followRetryMax = 30
	// sseLineBytesMax bounds one line of the live feed; a longer one ends
	// the connection with an error and follow reconnects.
	sseLineBytesMax = 1 << 20
	// followRetryWait is the wait between reconnects.
	followRetryWait = time.Second
)

type cli struct {
	stdin  io.Reader
	stdout io.Writer
	addr   string
	json   bool
	http   http.Client
	getenv func(string) string
}

// flags returns a command's flag set with the common flags on it, their
// defaults what was given before the command (or STOCKCTL_ADDR).
func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("stockctl "+name, flag.ContinueOnError)
	fs.SetOutput(c.stdout)
	fs.StringVar(&c.addr, "addr", c.addr, "ledgerd's HTTP address (STOCKCTL_ADDR)")
	fs.BoolVar(&c.json, "json", c.json, "JSON output for scripts")
	return fs
}

// parse parses flags and positional arguments in any order and checks the
// count of positional ones.
func parse(fs *flag.FlagSet, args []string, names ...string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != len(names) {
		return nil, fmt.Errorf("%s: want arguments %s, got %d (%s)", fs.Name(), strings.Join(names, " "), len(pos), strings.Join(pos, " "))
	}
	return pos, nil
}

// serviceError is an error answer of ledgerd: its status and body, printed
// as the service wrote them.
type serviceError struct {
	status int
	body   []byte
}

// Error prints the problem as the service wrote it: title, detail and
// each field at fault.
func (e *serviceError) Error() string {
	var p struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
		Errors []struct {
			Index int    `json:"index"`
			Field string `json:"field"`
			Value string `json:"value"`
			Rule  string `json:"rule"`
		} `json:"errors"`
	}
	if json.Unmarshal(e.body, &p) != nil || (p.Title == "" && p.Detail == "") {
		return fmt.Sprintf("ledgerd answered %d: %s", e.status, bytes.TrimSpace(e.body))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ledgerd answered %d %s: %s", e.status, p.Title, p.Detail)
	for _, fe := range p.Errors {
		fmt.Fprintf(&b, "\n  event %d: %s %q: %s", fe.Index, fe.Field, fe.Value, fe.Rule)
	}
	return b.String()
}

// call sends a request and returns the body of a 2xx answer; any other
// answer is a *serviceError.
func (c *cli) call(ctx context.Context, method, path string, q url.Values, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	u := strings.TrimRight(c.addr, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("-addr %q: %w", c.addr, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w (is ledgerd running? -addr or STOCKCTL_ADDR)", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, responseBytesMax))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, u, err)
	}
	if resp.StatusCode/100 != 2 {
		return data, &serviceError{status: resp.StatusCode, body: data}
	}
	return data, nil
}

// printJSON writes a raw answer as one indented document.
func (c *cli) printJSON(data []byte) error {
	var b bytes.Buffer
	if err := json.Indent(&b, data, "", "  "); err != nil {
		_, err = c.stdout.Write(data)
		return err
	}
	b.WriteByte('\n')
	_, err := c.stdout.Write(b.Bytes())
	return err
}

// follow prints the live feed until ctx ends, reconnecting with the last
// event id after a dropped connection.
func (c *cli) followFeed(ctx context.Context, shop, lastID string) error {
	failures := 0
	for {
		got, id, err := c.followOnce(ctx, shop, lastID)
		if ctx.Err() != nil {
			return nil
		}
		lastID = id
		var se *serviceError
		if errors.As(err, &se) && se.status != http.StatusServiceUnavailable {
			return err
		}
		if got {
			failures = 0
		}
		failures++
		if failures > followRetryMax {
			return fmt.Errorf("live feed of %s: %d reconnects without an event, giving up: %v", shop, followRetryMax, err)
		}
		t := time.NewTimer(followRetryWait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// followOnce reads the feed once; it reports whether any event came and the
// last event id seen.
func (c *cli) followOnce(ctx context.Context, shop, lastID string) (bool, string, error) {
	u := strings.TrimRight(c.addr, "/") + "/v1/shops/" + url.PathEscape(shop) + "/live"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, lastID, err
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false, lastID, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, responseBytesMax))
		return false, lastID, &serviceError{status: resp.StatusCode, body: data}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), sseLineBytesMax)
	got := false
	var id, event, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if event != "" {
				got = true
				if id != "" {
					lastID = id
				}
				if err := c.printLive(id, event, data); err != nil {
					return got, lastID, err
				}
			}
			id, event, data = "", "", ""
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
	return got, lastID, sc.Err()
}

func (c *cli) printLive(id, event, data string) error {
	if c.json {
		line, err := json.Marshal(struct {
			ID    string          `json:"id,omitempty"`
			Event string          `json:"event"`
			Data  json.RawMessage `json:"data"`
		}{id, event, json.RawMessage(data)})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.stdout, "%s\n", line)
		return err
	}
	now := time.Now().Format("15:04:05")
	switch event {
	case "view":
		var v view
		if err := json.Unmarshal([]byte(data), &v); err != nil {
			return err
		}
		_, err := fmt.Fprintf(c.stdout, "%s view   %s listed=%d real=%d open=%d late=%d at_risk=%s pace=%d/h%s\n",
			now, v.SKU, v.Listed, v.real(), v.OpenOrders, v.LateOrders, yuan(v.ExposureFen), v.PacePerHour, sellout(v))
		return err
	case "alert":
		var a alert
		if err := json.Unmarshal([]byte(data), &a); err != nil {
			return err
		}
		_, err := fmt.Fprintf(c.stdout, "%s alert  #%s %s %s %s at_risk=%s: %s\n", now, id, a.Kind, a.SKU, a.State, yuan(a.ExposureFen), a.Message)
		return err
	case "alerts":
		var as []alert
		if err := json.Unmarshal([]byte(data), &as); err != nil {
			return err
		}
		for _, a := range as {
			if _, err := fmt.Fprintf(c.stdout, "%s open   %s %s at_risk=%s: %s\n", now, a.Kind, a.SKU, yuan(a.ExposureFen), a.Message); err != nil {
				return err
			}
		}
	case "ready":
		_, err := fmt.Fprintf(c.stdout, "%s -- following the live feed (Ctrl-C stops)\n", now)
		return err
	}
	return nil
}

// int64Flag parses a numeric flag value, naming the flag when it is not one.
func int64Flag(name, raw string) (int64, error) {
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("-%s %q: must be a whole number", name, raw)
	}
	return n, nil
}

// minSeq is the -min-seq flag of the read commands.
type minSeq struct{ seq *uint64 }

// minSeqFlag declares -min-seq on fs.
func minSeqFlag(fs *flag.FlagSet) minSeq {
	return minSeq{fs.Uint64("min-seq", 0, "wait until ledgerd has applied this sequence")}
}

// query returns q with min_seq set when the flag was given (q may be nil).
func (m minSeq) query(q url.Values) url.Values {
	if q == nil {
		q = url.Values{}
	}
	if *m.seq > 0 {
		q.Set("min_seq", strconv.FormatUint(*m.seq, 10))
	}
	return q
}
