package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger/transport"
	"stockledger/projections"
)

// faultStreamBytes sizes the streams of a fault run: the alert stream (a
// quarter of it) drops its oldest messages when full, and the check reads
// every alert change.
const faultStreamBytes = 1 << 30

// privatePG is a Postgres server of one test: its own data directory and
// port, so that the test can stop it and cut its connections without
// touching the machine's shared server.
type privatePG struct {
	bin, dir string
	port     int
	runAs    string // "postgres" when the test runs as root
	url      string
}

// startPrivatePostgres initialises and starts a private Postgres with
// initdb and pg_ctl. Without Postgres binaries the test is skipped, or fails
// under CI=true.
func startPrivatePostgres(t *testing.T) *privatePG {
	t.Helper()
	initdbs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(initdbs) == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("no /usr/lib/postgresql/*/bin/initdb and CI=true: install the postgresql package")
		}
		t.Skip("skipping: no Postgres binaries at /usr/lib/postgresql/*/bin to start a private server")
	}
	p := &privatePG{bin: filepath.Dir(initdbs[len(initdbs)-1])}
	dir, err := os.MkdirTemp("", "ledger-pg-")
	if err != nil {
		t.Fatal(err)
	}
	p.dir = dir
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		// initdb refuses root: run the server as the postgres user.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root and no postgres user to run a private Postgres: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		p.runAs = "postgres"
	}
	_, portText, _ := net.SplitHostPort(freePort(t))
	p.port, _ = strconv.Atoi(portText)
	p.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
	p.run(t, "initdb", "-D", filepath.Join(dir, "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	p.start(t)
	t.Cleanup(func() { _ = p.cmd("pg_ctl", "-D", filepath.Join(dir, "data"), "-m", "immediate", "-w", "stop").Run() })
	return p
}

func (p *privatePG) cmd(name string, args ...string) *exec.Cmd {
	path := filepath.Join(p.bin, name)
	if p.runAs != "" {
		return exec.Command("runuser", append([]string{"-u", p.runAs, "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

func (p *privatePG) run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := p.cmd(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// start starts the server and waits until it accepts connections.
func (p *privatePG) start(t *testing.T) {
	t.Helper()
	p.run(t, "pg_ctl", "-D", filepath.Join(p.dir, "data"), "-l", filepath.Join(p.dir, "log"), "-w", "-t", "60",
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", p.port, p.dir), "start")
}

// stop stops the server the hard way: no checkpoint, clients cut, recovery
// from the WAL at the next start.
func (p *privatePG) stop(t *testing.T) {
	t.Helper()
	p.run(t, "pg_ctl", "-D", filepath.Join(p.dir, "data"), "-m", "immediate", "-w", "stop")
}

// terminate cuts every other connection to the server and returns how many.
func (p *privatePG) terminate(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE pid <> pg_backend_pid() AND datname = current_database()) AS cut`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitProgress waits until the feed has had more sales acknowledged than
// from.
func waitProgress(t *testing.T, f *feed, from int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		f.mu.Lock()
		n := f.sent
		f.mu.Unlock()
		if n > from {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the feed made no progress within %s (still %d sales)", within, n)
		}
		waitFor(10 * time.Millisecond)
	}
}

func (f *feed) sales() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent
}

// waitHealth polls /healthz until its status code is want.
func waitHealth(t *testing.T, base string, want int) health {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, body := doGet(t, base+"/healthz")
		var h health
		_ = json.Unmarshal(body, &h)
		if status == want {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz still %d %s, want %d", status, body, want)
		}
		waitFor(50 * time.Millisecond)
	}
}

// TestPostgresFaults runs ledgerd on a private Postgres under load from the
// feed, cuts its connections with pg_terminate_backend, and stops it
// (immediate mode) and starts it again: the projector waits and resumes,
// /healthz says degraded while Postgres is down, reads are served stale
// with their last_seq, and at the end nothing is lost, doubled or
// half-applied.
func TestPostgresFaults(t *testing.T) {
	cycles := faultEnv(1, 5)
	pg := startPrivatePostgres(t)
	svc := startTestService(t, pg.url, func(c *config) { c.StreamBytes = faultStreamBytes })
	base := "http://" + svc.httpAddr
	nc, err := nats.Connect(svc.ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	pub, err := transport.NewPublisher(nc, transport.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := newFeed(pub, "shop-p", 4)
	stop := make(chan struct{})
	fed := make(chan int)
	go func() { fed <- f.run(t, stop) }()

	cut, stops := 0, 0
	for range cycles {
		waitProgress(t, f, f.sales(), time.Minute)
		cut += pg.terminate(t)

		waitProgress(t, f, f.sales(), time.Minute)
		var before projections.View
		for deadline := time.Now().Add(time.Minute); ; {
			status, body := doGet(t, base+"/v1/shops/shop-p/skus/sku-0")
			if status == http.StatusOK && json.Unmarshal(body, &before) == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET sku before the stop: %d %s", status, body)
			}
			waitFor(20 * time.Millisecond)
		}
		pg.stop(t)
		stops++
		h := waitHealth(t, base, http.StatusServiceUnavailable)
		// The store is probed in the background (every healthProbeEvery):
		// the projector's failure may show first.
		for deadline := time.Now().Add(10 * time.Second); h.Store == "ok" && time.Now().Before(deadline); {
			waitFor(50 * time.Millisecond)
			h = waitHealth(t, base, http.StatusServiceUnavailable)
		}
		if h.Store == "ok" {
			t.Errorf("/healthz degraded but store %q while Postgres is down", h.Store)
		}
		// Stale reads: the last answer, with its last_seq.
		status, body := doGet(t, base+"/v1/shops/shop-p/skus/sku-0")
		var stale projections.View
		if status != http.StatusOK || json.Unmarshal(body, &stale) != nil || stale.LastSeq < before.LastSeq || stale.LastSeq == 0 {
			t.Errorf("GET sku while Postgres is down: %d %s, want the last view (last_seq ≥ %d)", status, body, before.LastSeq)
		}
		// The feed goes on meanwhile: NATS takes the events.
		waitProgress(t, f, f.sales(), time.Minute)
		waitHealth(t, base, http.StatusServiceUnavailable)
		pg.start(t)
		waitHealth(t, base, http.StatusOK)
	}
	close(stop)
	<-fed
	js, _ := jetstream.New(nc)
	figs := checkService(t, base, js, f.ackedIDs(), f.shop)
	t.Logf("connections cut %d, stops %d", cut, stops)
	report(t, fmt.Sprintf("Postgres stopped/started %d times and connections cut (%d backends)", stops, cut), 1, 2*cycles, figs, f.retry)
}

// TestNATSRestart runs ledgerd against an external NATS server (in process,
// owned by the test) and restarts that server on the same port and store
// directory under load: the feed's publisher retries with the same ids, the
// projector resumes, and no acknowledged event is lost or stored twice.
func TestNATSRestart(t *testing.T) {
	restarts := faultEnv(2, 10)
	_, portText, _ := net.SplitHostPort(freePort(t))
	port, _ := strconv.Atoi(portText)
	storeDir := t.TempDir()
	startNATS := func() *server.Server {
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: storeDir, NoLog: true, NoSigs: true})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatal("nats-server not ready")
		}
		return s
	}
	ns := startNATS()
	defer func() { ns.Shutdown() }()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	cfg := config{HTTPAddr: "127.0.0.1:0", NATSURL: url, Sync: syncInterval, StreamBytes: faultStreamBytes,
		SelloutSoon: projections.DefaultSelloutSoon, FulfilmentRiskPct: projections.DefaultFulfilmentRiskPct}
	svc, err := start(context.Background(), cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := svc.stop(); err != nil {
			t.Error(err)
		}
	}()
	base := "http://" + svc.httpAddr
	nc, _, f := restartingFeed(t, url, "shop-n")
	stop := make(chan struct{})
	fed := make(chan int)
	go func() { fed <- f.run(t, stop) }()
	for range restarts {
		waitProgress(t, f, f.sales(), time.Minute)
		ns.Shutdown()
		ns.WaitForShutdown()
		waitHealth(t, base, http.StatusServiceUnavailable)
		ns = startNATS()
		waitHealth(t, base, http.StatusOK)
	}
	waitProgress(t, f, f.sales(), time.Minute)
	close(stop)
	<-fed
	js, _ := jetstream.New(nc)
	figs := checkService(t, base, js, f.ackedIDs(), f.shop)
	report(t, fmt.Sprintf("NATS server restarted %d times", restarts), 1, restarts, figs, f.retry)
}
