package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"stockledger/consumers/consumertest"
	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// TestKillRestart runs the real ledgerd binary, feeds it sales over NATS with
// the order-feed publisher, kills it with SIGKILL several times under load
// and starts it again on the same data directory. Every acknowledged sale
// must be in the stream exactly once and counted exactly once.
func TestKillRestart(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "ledgerd")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build ledgerd: %v", err)
	}
	t.Run("memory", func(t *testing.T) { killRestart(t, bin, "") })
	t.Run("postgres", func(t *testing.T) { killRestart(t, bin, testDatabaseURL(t)) })
	t.Run("sigterm", func(t *testing.T) { sigtermStops(t, bin) })
}

// sigtermStops sends SIGTERM to a ledgerd under load: it must exit 0 after
// saying it stopped, and a restart must show every acknowledged event.
func sigtermStops(t *testing.T, bin string) {
	httpAddr, natsAddr := freePort(t), freePort(t)
	env := []string{"LEDGER_HTTP_ADDR=" + httpAddr, "LEDGER_NATS_LISTEN=" + natsAddr,
		"LEDGER_DATA_DIR=" + t.TempDir(), "DATABASE_URL=" + testDatabaseURL(t), "NATS_URL="}
	base := "http://" + httpAddr
	d := startDaemon(t, bin, env)
	waitHealthy(t, base, d)
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := transport.NewPublisher(nc, transport.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	events := []ledger.Event{{Type: ledger.Listing, Shop: "shop-t", SKU: "sku-t", Title: "Term test", PriceFen: 500,
		Stock: ledger.Int64(1000), SalesForm: ledger.Spot, ShipWithinHours: 48}}
	for i := range 500 {
		events = append(events, ledger.Event{Type: ledger.Sale, Shop: "shop-t", SKU: "sku-t",
			OrderID: fmt.Sprintf("term-%d", i), Qty: ledger.Int64(1), UnitPriceFen: 500})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	acks, err := pub.Publish(ctx, events)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		d.kill()
		t.Fatal("ledgerd did not stop within 30s of SIGTERM")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("ledgerd exited %d after SIGTERM, want 0", code)
	}
	if !d.stopped.Load() {
		t.Error(`ledgerd did not log "stopped" before exiting`)
	}
	d = startDaemon(t, bin, env)
	defer d.kill()
	waitHealthy(t, base, d)
	status, body := doGet(t, fmt.Sprintf("%s/v1/shops/shop-t/skus/sku-t?min_seq=%d", base, acks[len(acks)-1].Seq))
	if status != http.StatusOK || !strings.Contains(string(body), `"committed":500,`) {
		t.Fatalf("after restart: %d %s, want committed 500", status, body)
	}
}

// daemon is one ledgerd process.
type daemon struct {
	cmd     *exec.Cmd
	done    chan struct{}
	stopped atomic.Bool // it logged a clean stop
}

func startDaemon(t *testing.T, bin string, env []string) *daemon {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ledgerd: %v", err)
	}
	d := &daemon{cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "level=ERROR") {
				t.Log("ledgerd:", sc.Text())
			}
			if strings.Contains(sc.Text(), `msg=stopped`) {
				d.stopped.Store(true)
			}
		}
		_ = cmd.Wait()
		close(d.done)
	}()
	return d
}

func (d *daemon) kill() {
	_ = d.cmd.Process.Kill() // SIGKILL
	<-d.done
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitHealthy polls /healthz until it answers 200 or the deadline passes.
func waitHealthy(t *testing.T, base string, d *daemon) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			t.Fatal("ledgerd exited while starting")
		case <-tick.C:
		}
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatal("ledgerd not healthy within 60s")
}

// killRestart runs the feed against the real binary and SIGKILLs it at
// random moments (each after the feed made progress since the last kill),
// starting it again every time; then one more kill after the last ack, a
// clean start, and the full check.
func killRestart(t *testing.T, bin, databaseURL string) {
	kills := faultEnv(4, 20)
	httpAddr, natsAddr := freePort(t), freePort(t)
	env := []string{"LEDGER_HTTP_ADDR=" + httpAddr, "LEDGER_NATS_LISTEN=" + natsAddr,
		"LEDGER_DATA_DIR=" + t.TempDir(), "DATABASE_URL=" + databaseURL, "NATS_URL="}
	base := "http://" + httpAddr
	var mu sync.Mutex
	d := startDaemon(t, bin, env)
	defer func() { mu.Lock(); d.kill(); mu.Unlock() }()
	waitHealthy(t, base, d)

	_, js, f := restartingFeed(t, "nats://"+natsAddr, "shop-k")
	stop := make(chan struct{})
	fed := make(chan int)
	go func() { fed <- f.run(t, stop) }()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	for n := 0; n < kills; n++ {
		// Wait for progress, then a random moment within the next 400 ms.
		f.mu.Lock()
		from := f.sent
		f.mu.Unlock()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			f.mu.Lock()
			progressed := f.sent > from
			f.mu.Unlock()
			if progressed {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no progress of the feed within 2 minutes after kill %d", n)
			}
			waitFor(10 * time.Millisecond)
		}
		waitFor(time.Duration(rng.IntN(400)) * time.Millisecond)
		mu.Lock()
		d.kill()
		d = startDaemon(t, bin, env)
		mu.Unlock()
	}
	close(stop)
	sales := <-fed
	// A last kill after everything was acknowledged, then a clean start.
	mu.Lock()
	d.kill()
	d = startDaemon(t, bin, env)
	mu.Unlock()
	waitHealthy(t, base, d)

	figs := checkService(t, base, js, f.ackedIDs(), f.shop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := consumertest.Read(ctx, js, projections.DefaultFoldConfig())
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Sales) != sales {
		t.Errorf("stream holds %d distinct orders' sales, want %d", len(l.Sales), sales)
	}
	store := "memory"
	if databaseURL != "" {
		store = "postgres"
	}
	report(t, "SIGKILL of ledgerd ("+store+")", 1, kills+1, figs, f.retry)
}

func doGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	return do(t, http.MethodGet, url, nil)
}

// waitFor pauses a retry loop between attempts against a restarting server.
func waitFor(d time.Duration) {
	<-time.After(d)
}
