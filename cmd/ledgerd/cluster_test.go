package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/consumers"
	"stockledger/consumers/consumertest"
	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// Cluster test sizes. The short version runs in CI; LEDGER_CLUSTER_FULL=1
// runs the full one (go test -run 'TestCluster' -v ./cmd/ledgerd).
const (
	clusterShops        = 20
	clusterEventsShort  = 3000
	clusterEventsFull   = 60000
	clusterChunk        = 200
	clusterLeaseTTL     = 2 * time.Second
	clusterPartitions   = 2
	clusterSettleMax    = 90 * time.Second
	clusterLoadMax      = 2 * time.Minute
	clusterPublishTries = 400
)

func clusterFull() bool { return os.Getenv("LEDGER_CLUSTER_FULL") == "1" }

// natsCluster is three nats-server instances in this process, routed to one
// another over real loopback ports, with JetStream.
type natsCluster struct {
	servers []*server.Server
	urls    []string
}

func startCluster(t *testing.T, n int) *natsCluster {
	t.Helper()
	routePorts := make([]string, n)
	for i := range routePorts {
		routePorts[i] = freePort(t)
	}
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, "nats://"+p)
	}
	c := &natsCluster{}
	for i := range n {
		_, portText, _ := net.SplitHostPort(routePorts[i])
		port, _ := strconv.Atoi(portText)
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "ledger", Host: "127.0.0.1", Port: port},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(s.Shutdown)
		c.servers = append(c.servers, s)
	}
	for _, s := range c.servers {
		if !s.ReadyForConnections(20 * time.Second) {
			t.Fatalf("server %s not ready", s.Name())
		}
		c.urls = append(c.urls, s.ClientURL())
	}
	// JetStream is usable once the meta group has a leader that every
	// server follows.
	deadline := time.Now().Add(30 * time.Second)
	for {
		leader, current := false, true
		for _, s := range c.servers {
			leader = leader || s.JetStreamIsLeader()
			current = current && s.JetStreamIsCurrent()
		}
		if leader && current {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatal("JetStream meta group has no leader within 30s")
		}
		waitFor(20 * time.Millisecond)
	}
}

func (c *natsCluster) url() string { return strings.Join(c.urls, ",") }

// shutdownLeader stops the server leading the event stream and returns its
// name.
func (c *natsCluster) shutdownLeader(ctx context.Context, js jetstream.JetStream) (string, error) {
	st, err := js.Stream(ctx, transport.EventStream)
	if err != nil {
		return "", err
	}
	leader := st.CachedInfo().Cluster.Leader
	for _, s := range c.servers {
		if s.Name() == leader {
			s.Shutdown()
			s.WaitForShutdown()
			return leader, nil
		}
	}
	return "", fmt.Errorf("stream leader %q is not one of the servers", leader)
}

func buildLedgerd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ledgerd")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build ledgerd: %v", err)
	}
	return bin
}

// clusterDaemon is one ledgerd process of the cluster test.
type clusterDaemon struct {
	name string
	base string
	d    *daemon
}

func startClusterDaemon(t *testing.T, bin, name, natsURL, databaseURL string, partitions int) *clusterDaemon {
	t.Helper()
	addr := freePort(t)
	env := []string{"LEDGER_HTTP_ADDR=" + addr, "LEDGER_DATA_DIR=" + t.TempDir(), "NATS_URL=" + natsURL,
		"DATABASE_URL=" + databaseURL, "LEDGER_PARTITIONS=" + strconv.Itoa(partitions), "LEDGER_REPLICAS=3",
		"LEDGER_INSTANCE=" + name, "LEDGER_LEASE_TTL=" + clusterLeaseTTL.String(), "LEDGER_LOG_LEVEL=warn"}
	cd := &clusterDaemon{name: name, base: "http://" + addr, d: startDaemon(t, bin, env)}
	t.Cleanup(cd.d.kill)
	waitHealthy(t, cd.base, cd.d)
	return cd
}

// leaseOwners reads which instance holds each partition's lease.
func leaseOwners(ctx context.Context, js jetstream.JetStream, partitions int) map[int]string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	owners := map[int]string{}
	kv, err := js.KeyValue(ctx, consumers.LeaseBucket)
	if err != nil {
		return owners
	}
	for p := range partitions {
		if e, err := kv.Get(ctx, "owner."+strconv.Itoa(p)); err == nil {
			owners[p] = string(e.Value())
		}
	}
	return owners
}

// TestCluster runs two ledgerd processes with two partitions against a
// three-node JetStream cluster (R3 streams) and a shared Postgres read model.
// Under a steady feed it shuts down the event stream's leader, then SIGKILLs
// the ledgerd holding partition 0. Every acknowledged event must be in the
// stream once and applied once (restocks would count twice if applied twice;
// sales are checked by count), and the survivor must take over and finish
// the projection. It reports the failover time.
func TestCluster(t *testing.T) {
	total := clusterEventsShort
	if clusterFull() {
		total = clusterEventsFull
	}
	dbURL := testDatabaseURL(t)
	bin := buildLedgerd(t)
	cl := startCluster(t, 3)

	a := startClusterDaemon(t, bin, "ledgerd-a", cl.url(), dbURL, clusterPartitions)
	b := startClusterDaemon(t, bin, "ledgerd-b", cl.url(), dbURL, clusterPartitions)
	daemons := map[string]*clusterDaemon{a.name: a, b.name: b}

	nc, js := connectJS(t, cl.url(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Both instances hold one partition each before the load starts.
	deadline := time.Now().Add(30 * time.Second)
	for {
		o := leaseOwners(ctx, js, clusterPartitions)
		if len(o) == clusterPartitions && o[0] != o[1] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions not shared between the two instances within 30s: %v", o)
		}
		waitFor(50 * time.Millisecond)
	}

	store, err := projections.OpenPostgres(ctx, dbURL, projections.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	pub, err := transport.NewPublisher(nc, transport.PublisherOptions{AckTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var lastSeq uint64
	acked := 0
	var longestStall time.Duration
	lastAck := time.Now()
	publish := func(events []ledger.Event) {
		for attempt := 0; ; attempt++ {
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			acks, err := pub.Publish(pctx, events)
			pcancel()
			if err == nil {
				for _, ack := range acks {
					lastSeq = max(lastSeq, ack.Seq)
				}
				acked += len(events)
				longestStall = max(longestStall, time.Since(lastAck))
				lastAck = time.Now()
				return
			}
			if attempt >= clusterPublishTries {
				t.Fatalf("publish never succeeded: %v", err)
			}
			// The same events again: same ids, deduplicated by the stream.
			waitFor(25 * time.Millisecond)
		}
	}
	shop := func(i int) string { return fmt.Sprintf("shop-%02d", i%clusterShops) }
	var listings []ledger.Event
	for i := range clusterShops {
		listings = append(listings, ledger.Event{Type: ledger.Listing, Shop: shop(i), SKU: "sku-1", Title: "Cluster test",
			PriceFen: 1000, Stock: ledger.Int64(1_000_000), SalesForm: ledger.Spot, ShipWithinHours: 72})
	}
	publish(listings)

	// The faults, from their own goroutine so that the feed keeps going.
	type faultReport struct {
		leader   string
		victim   string
		failover time.Duration
		err      error
	}
	faults := make(chan faultReport, 1)
	progress := make(chan int, 1)
	var failedOver atomic.Bool
	go func() {
		var r faultReport
		defer func() { failedOver.Store(true); faults <- r }()
		for n := range progress {
			if n >= total/3 {
				break
			}
		}
		if r.leader, r.err = cl.shutdownLeader(ctx, js); r.err != nil {
			return
		}
		t.Logf("stream leader %s shut down", r.leader)
		for n := range progress {
			if n >= 2*total/3 {
				break
			}
		}
		owners := leaseOwners(ctx, js, clusterPartitions)
		for len(owners) < clusterPartitions && ctx.Err() == nil {
			waitFor(20 * time.Millisecond) // the lease bucket may be electing a leader
			owners = leaseOwners(ctx, js, clusterPartitions)
		}
		r.victim = owners[0]
		if daemons[r.victim] == nil {
			r.err = fmt.Errorf("partition 0 held by unknown instance %q", r.victim)
			return
		}
		t.Logf("killing ledgerd %s (leases %v)", r.victim, owners)
		var mine []int
		for p, o := range owners {
			if o == r.victim {
				mine = append(mine, p)
			}
		}
		killed := time.Now()
		daemons[r.victim].d.kill()
		// Failover: every partition of the dead instance is leased by
		// another, and has a commit from it.
		before, taken := map[int]uint64{}, map[int]bool{}
		for ctx.Err() == nil {
			now := leaseOwners(ctx, js, clusterPartitions)
			done := true
			for _, p := range mine {
				switch {
				case now[p] == "" || now[p] == r.victim:
					done = false
				case !taken[p]:
					// Taken over: its checkpoint now is where the new owner starts.
					var err error
					before[p], err = store.Checkpoint(ctx, consumers.PartitionName(consumers.DefaultName, p))
					taken[p] = err == nil
					done = false
				default:
					ck, err := store.Checkpoint(ctx, consumers.PartitionName(consumers.DefaultName, p))
					if err != nil || ck <= before[p] {
						done = false
					}
				}
			}
			if done {
				r.failover = time.Since(killed)
				return
			}
			waitFor(10 * time.Millisecond)
		}
		r.err = ctx.Err()
	}()

	restocks := map[string]int{}
	sales := map[string]int{}
	loadEnd := time.Now().Add(clusterLoadMax)
	for i := 0; i < total || !failedOver.Load(); i += clusterChunk {
		if time.Now().After(loadEnd) {
			t.Fatalf("no failover within %s of load", clusterLoadMax)
		}
		if i >= total {
			// Planned load done: a trickle until the failover shows.
			waitFor(50 * time.Millisecond)
		}
		chunk := make([]ledger.Event, 0, clusterChunk)
		for j := i; j < i+clusterChunk; j++ {
			s := shop(j)
			if j%2 == 0 {
				chunk = append(chunk, ledger.Event{Type: ledger.Sale, Shop: s, SKU: "sku-1", OrderID: fmt.Sprintf("o-%07d", j),
					Qty: ledger.Int64(1), UnitPriceFen: 1000})
				sales[s]++
			} else {
				chunk = append(chunk, ledger.Event{Type: ledger.Restock, Shop: s, SKU: "sku-1", Qty: ledger.Int64(1)})
				restocks[s]++
			}
		}
		publish(chunk)
		select {
		case progress <- i + clusterChunk:
		default:
		}
	}
	close(progress)
	fr := <-faults
	if fr.err != nil {
		t.Fatalf("faults: %v", fr.err)
	}
	t.Logf("load done: %d events acknowledged, last seq %d; failover took %s", acked, lastSeq, fr.failover)

	// The survivor answers for every shop once all partitions applied the
	// last acknowledged event.
	survivor := a
	if fr.victim == a.name {
		survivor = b
	}
	settle := time.Now().Add(clusterSettleMax)
	for {
		status, _ := doGet(t, fmt.Sprintf("%s/v1/shops/%s/skus?min_seq=%d", survivor.base, shop(0), lastSeq))
		if status == http.StatusOK {
			break
		}
		if time.Now().After(settle) {
			t.Fatalf("projection not complete within %s of the load's end (last seq %d)", clusterSettleMax, lastSeq)
		}
		waitFor(50 * time.Millisecond)
	}
	lost, dup := 0, 0
	for i := range clusterShops {
		s := shop(i)
		status, body := doGet(t, fmt.Sprintf("%s/v1/shops/%s/skus/sku-1", survivor.base, s))
		if status != http.StatusOK {
			t.Fatalf("sku of %s: %d %s", s, status, body)
		}
		var v struct {
			OnHand    int `json:"on_hand"`
			Committed int `json:"committed"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ got, want int }{{v.OnHand, 1_000_000 + restocks[s]}, {v.Committed, sales[s]}} {
			if c.got != c.want {
				t.Errorf("%s: got %d, want %d", s, c.got, c.want)
			}
			if c.got < c.want {
				lost += c.want - c.got
			} else {
				dup += c.got - c.want
			}
		}
	}
	stored := streamIDCounts(t, cl.url())
	for id, n := range stored {
		if n > 1 {
			dup += n - 1
			t.Errorf("event %s stored %d times", id, n)
		}
	}
	if len(stored) != acked {
		t.Errorf("stream holds %d distinct events, %d acknowledged", len(stored), acked)
	}
	if len(stored) < acked {
		lost += acked - len(stored)
	}
	t.Logf("cluster (3 nats-servers, R3, %d partitions, 2 ledgerd): events acknowledged %d, lost %d, duplicated %d; "+
		"stream leader %s shut down: longest publish stall %.2fs; ledgerd %s SIGKILLed: failover %.2fs (lease TTL %s)",
		clusterPartitions, acked, lost, dup, fr.leader, longestStall.Seconds(), fr.victim, fr.failover.Seconds(), clusterLeaseTTL)
	if lost != 0 || dup != 0 {
		t.Fatalf("lost %d, duplicated %d: want 0 and 0", lost, dup)
	}
	if acked < total {
		t.Fatalf("acknowledged %d events, planned at least %d", acked, total)
	}
}

// streamIDCounts reads the whole event stream and counts events by id.
func streamIDCounts(t *testing.T, url string) map[string]int {
	t.Helper()
	_, js := connectJS(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := consumertest.Read(ctx, js, projections.FoldConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return l.IDs
}

// Failover test sizes: 4 partitions over 2 ledgerd, the default lease TTL,
// a paced feed of failoverChunk events every failoverPace (about 1,000
// events/s), sized for a 2-core machine.
const (
	failoverPartitions = 4
	failoverShops      = 16
	failoverChunk      = 50
	failoverPace       = 50 * time.Millisecond
	failoverRecoverMax = 60 * time.Second
	failoverWarmup     = 2 * time.Second
	failoverTail       = time.Second // measured after a recovery
)

// failoverLeaseTTL is the lease TTL of the failover test's ledgerd: the
// default, or LEDGER_FAILOVER_LEASE_TTL to measure another.
func failoverLeaseTTL() string {
	if v := os.Getenv("LEDGER_FAILOVER_LEASE_TTL"); v != "" {
		return v
	}
	return consumers.DefaultLeaseTTL.String()
}

func failoverLeaseTTLDuration(t *testing.T) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(failoverLeaseTTL())
	if err != nil {
		t.Fatalf("LEDGER_FAILOVER_LEASE_TTL: %v", err)
	}
	return d
}

// natsProc is one nats-server process of the failover test: a SIGKILL of
// it is a crash (no leadership handed over, unlike Server.Shutdown in
// process).
type natsProc struct {
	name, bin, conf, url, logPath string
	cmd                           *exec.Cmd
	done                          chan struct{}
}

// procCluster is three nats-server processes routed to one another.
type procCluster struct {
	procs []*natsProc
}

// buildNATSServer builds nats-server from the module's own dependency.
func buildNATSServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nats-server")
	build := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build nats-server: %v", err)
	}
	return bin
}

func startProcCluster(t *testing.T, n int) *procCluster {
	t.Helper()
	bin := buildNATSServer(t)
	routePorts := make([]string, n)
	var routes []string
	for i := range routePorts {
		routePorts[i] = freePort(t)
		routes = append(routes, "nats://"+routePorts[i])
	}
	c := &procCluster{}
	for i := range n {
		dir := t.TempDir()
		addr := freePort(t)
		p := &natsProc{name: fmt.Sprintf("n%d", i+1), bin: bin, url: "nats://" + addr,
			conf: filepath.Join(dir, "nats.conf"), logPath: filepath.Join(dir, "nats.log")}
		conf := fmt.Sprintf("server_name: %s\nlisten: %q\njetstream { store_dir: %q }\n"+
			"cluster { name: ledger, listen: %q, routes: [%s] }\n",
			p.name, addr, filepath.Join(dir, "js"), routePorts[i], strings.Join(routes, ", "))
		if err := os.WriteFile(p.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		p.start(t)
		t.Cleanup(p.kill)
		c.procs = append(c.procs, p)
	}
	// JetStream answers once the meta group has a leader.
	_, js := connectJS(t, c.url(), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream cluster not ready within 30s: %v", err)
		}
		waitFor(100 * time.Millisecond)
	}
}

func (p *natsProc) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(p.bin, "-c", p.conf)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start nats-server %s: %v", p.name, err)
	}
	p.done = make(chan struct{})
	go func() { _ = p.cmd.Wait(); logf.Close(); close(p.done) }()
}

// kill SIGKILLs the process and waits for it to end.
func (p *natsProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (c *procCluster) url() string {
	urls := make([]string, len(c.procs))
	for i, p := range c.procs {
		urls[i] = p.url
	}
	return strings.Join(urls, ",")
}

func (c *procCluster) proc(name string) *natsProc {
	for _, p := range c.procs {
		if p.name == name {
			return p
		}
	}
	return nil
}

// streamLeader names the server leading stream, "" while it has none.
func streamLeader(ctx context.Context, js jetstream.JetStream, stream string) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil || st.CachedInfo().Cluster == nil {
		return ""
	}
	return st.CachedInfo().Cluster.Leader
}

// waitReplicasCurrent waits until each stream has a leader and two current
// replicas (a restarted server caught up).
func waitReplicasCurrent(t *testing.T, js jetstream.JetStream, streams ...string) {
	t.Helper()
	deadline := time.Now().Add(failoverRecoverMax)
	for _, name := range streams {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := js.Stream(ctx, name)
			cancel()
			if err == nil {
				ci := st.CachedInfo().Cluster
				current := ci != nil && ci.Leader != "" && len(ci.Replicas) == 2
				for _, r := range ci.Replicas {
					current = current && r.Current && !r.Offline
				}
				if current {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("stream %s: replicas not current within %s", name, failoverRecoverMax)
			}
			waitFor(100 * time.Millisecond)
		}
	}
}

// waitConsumersCurrent waits until each partition's projector consumer on
// stream has a leader and both other replicas current, as
// waitReplicasCurrent does for streams.
func waitConsumersCurrent(t *testing.T, js jetstream.JetStream, stream string, partitions int) {
	t.Helper()
	deadline := time.Now().Add(failoverRecoverMax)
	for p := range partitions {
		name := consumers.PartitionName(consumers.DefaultName, p)
		for !consumerCurrent(js, stream, name) {
			if time.Now().After(deadline) {
				t.Fatalf("consumer %s: replicas not current within %s", name, failoverRecoverMax)
			}
			waitFor(100 * time.Millisecond)
		}
	}
}

// consumerCurrent reports whether consumer name on stream has a leader and
// two current replicas besides it.
func consumerCurrent(js jetstream.JetStream, stream, name string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, stream, name)
	if err != nil {
		return false
	}
	ci := c.CachedInfo().Cluster
	if ci == nil || ci.Leader == "" || len(ci.Replicas) != 2 {
		return false
	}
	for _, r := range ci.Replicas {
		if !r.Current || r.Offline {
			return false
		}
	}
	return true
}

// failoverLoad is the test's paced feed: restocks (with receipt ids) and
// sales over failoverShops shops, each chunk re-sent until acknowledged.
type failoverLoad struct {
	pub *transport.Publisher

	mu       sync.Mutex
	restocks map[string]int
	sales    map[string]int
	acked    int
	lastSeq  uint64
	lastAck  time.Time
	stallMax time.Duration // longest time between acks since reset
	failed   int           // publish attempts that failed since reset
	partLast [failoverPartitions]atomic.Uint64
}

func failoverShop(i int) string { return fmt.Sprintf("shop-%02d", i%failoverShops) }

// run feeds until stop is closed; it returns the first error that is not
// a publish failure to retry.
func (l *failoverLoad) run(ctx context.Context, stop <-chan struct{}) error {
	tick := time.NewTicker(failoverPace)
	defer tick.Stop()
	for n := 0; ; n += failoverChunk {
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		chunk := make([]ledger.Event, 0, failoverChunk)
		for j := n; j < n+failoverChunk; j++ {
			if j%2 == 0 {
				chunk = append(chunk, ledger.Event{Type: ledger.Sale, Shop: failoverShop(j), SKU: "sku-1",
					OrderID: fmt.Sprintf("o-%08d", j), Qty: ledger.Int64(1), UnitPriceFen: 1000})
			} else {
				chunk = append(chunk, ledger.Event{Type: ledger.Restock, Shop: failoverShop(j), SKU: "sku-1",
					ReceiptID: fmt.Sprintf("r-%08d", j), Qty: ledger.Int64(1)})
			}
		}
		if err := l.publish(ctx, chunk); err != nil {
			return err
		}
	}
}

// publish sends chunk until it is acknowledged (same keys: the stream
// drops repeats) and counts it.
func (l *failoverLoad) publish(ctx context.Context, chunk []ledger.Event) error {
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		acks, err := l.pub.Publish(pctx, chunk)
		cancel()
		if err == nil {
			l.acked1(chunk, acks)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		l.mu.Lock()
		l.failed++
		l.mu.Unlock()
		waitFor(25 * time.Millisecond)
	}
}

func (l *failoverLoad) acked1(chunk []ledger.Event, acks []transport.Ack) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, e := range chunk {
		switch e.Type {
		case ledger.Sale:
			l.sales[e.Shop]++
		case ledger.Restock:
			l.restocks[e.Shop]++
		}
		l.lastSeq = max(l.lastSeq, acks[i].Seq)
		p := &l.partLast[transport.Partition(e.Shop, failoverPartitions)]
		p.Store(max(p.Load(), acks[i].Seq))
	}
	l.acked += len(chunk)
	now := time.Now()
	if !l.lastAck.IsZero() {
		l.stallMax = max(l.stallMax, now.Sub(l.lastAck))
	}
	l.lastAck = now
}

// resetStall starts a new measuring window and returns the longest stall
// of the one before.
func (l *failoverLoad) resetStall() (time.Duration, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, failed := max(l.stallMax, time.Since(l.lastAck)), l.failed
	l.stallMax, l.failed = 0, 0
	return s, failed
}

// waitAcked waits until a chunk is acknowledged after since, or fails the
// test after failoverRecoverMax.
func (l *failoverLoad) waitAcked(t *testing.T, since time.Time, what string) {
	t.Helper()
	deadline := time.Now().Add(failoverRecoverMax)
	for {
		l.mu.Lock()
		last := l.lastAck
		l.mu.Unlock()
		if last.After(since) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no publish acknowledged within %s", what, failoverRecoverMax)
		}
		waitFor(20 * time.Millisecond)
	}
}

// failoverWatch polls every partition's checkpoint in Postgres and every
// ledgerd's /healthz, and keeps per window: each partition's longest
// projection gap (time with acknowledged events past its checkpoint and no
// checkpoint move), the slowest /healthz, and what /healthz said.
type failoverWatch struct {
	t     *testing.T
	store projections.Store
	load  *failoverLoad

	mu         sync.Mutex
	since      time.Time
	lastMove   [failoverPartitions]time.Time
	ckpt       [failoverPartitions]uint64
	gapMax     [failoverPartitions]time.Duration
	healthMax  time.Duration
	lastHealth map[string]string
}

func (w *failoverWatch) watchCheckpoints(ctx context.Context) {
	for ctx.Err() == nil {
		var pending [failoverPartitions]uint64
		for p := range pending {
			pending[p] = w.load.partLast[p].Load() // before the checkpoint read
		}
		for p := range failoverPartitions {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			ck, err := w.store.Checkpoint(rctx, consumers.PartitionName(consumers.DefaultName, p))
			cancel()
			now := time.Now()
			w.mu.Lock()
			if err == nil && (ck > w.ckpt[p] || ck >= pending[p]) {
				w.ckpt[p], w.lastMove[p] = max(ck, w.ckpt[p]), now
			}
			w.gapMax[p] = max(w.gapMax[p], now.Sub(w.lastMove[p]))
			w.mu.Unlock()
		}
		waitFor(50 * time.Millisecond)
	}
}

// digits are left out when /healthz answers are compared.
var digits = regexp.MustCompile(`[0-9]+`)

// watchHealth polls one ledgerd's /healthz until ctx ends or it dies.
func (w *failoverWatch) watchHealth(ctx context.Context, cd *clusterDaemon) {
	client := &http.Client{Timeout: 5 * time.Second}
	for ctx.Err() == nil {
		select {
		case <-cd.d.done:
			return
		default:
		}
		began := time.Now()
		resp, err := client.Get(cd.base + "/healthz")
		took := time.Since(began)
		var h health
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
		}
		select {
		case <-cd.d.done:
			return // killed meanwhile: its answer does not count
		default:
		}
		said := fmt.Sprintf("%s %v", h.Status, h.Reasons)
		if err != nil {
			said = err.Error()
		}
		kind := digits.ReplaceAllString(said, "N") // a lag that grows is no change
		w.mu.Lock()
		w.healthMax = max(w.healthMax, took)
		changed := w.lastHealth[cd.name] != kind
		w.lastHealth[cd.name] = kind
		since := time.Since(w.since)
		w.mu.Unlock()
		if changed {
			w.t.Logf("  +%5.2fs /healthz of %s: %s (answered in %s)", since.Seconds(), cd.name, said, took.Round(time.Millisecond))
		}
		waitFor(100 * time.Millisecond)
	}
}

// window ends the measuring window begun at the last reset and starts a
// new one; it returns the window's longest gap per partition and slowest
// /healthz.
func (w *failoverWatch) window() ([failoverPartitions]time.Duration, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	gaps, hm := w.gapMax, w.healthMax
	w.gapMax, w.healthMax, w.since = [failoverPartitions]time.Duration{}, 0, time.Now()
	return gaps, hm
}

// waitProjected waits until every partition's checkpoint reaches what was
// acknowledged for it when the wait began, or fails the test after
// failoverRecoverMax.
func (w *failoverWatch) waitProjected(t *testing.T, what string) {
	t.Helper()
	var target [failoverPartitions]uint64
	for p := range target {
		target[p] = w.load.partLast[p].Load()
	}
	deadline := time.Now().Add(failoverRecoverMax)
	for {
		done := true
		w.mu.Lock()
		for p := range target {
			done = done && w.ckpt[p] >= target[p]
		}
		ck := w.ckpt
		w.mu.Unlock()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: partitions not projecting again within %s: checkpoints %v, acknowledged %v", what, failoverRecoverMax, ck, target)
		}
		waitFor(50 * time.Millisecond)
	}
}

// startFailoverDaemon starts a ledgerd of the failover test with the
// default lease TTL; its log goes to a file, and its lines about
// partitions and leases are in the test log at the end.
func startFailoverDaemon(t *testing.T, bin, name, natsURL, databaseURL string) *clusterDaemon {
	t.Helper()
	addr := freePort(t)
	logPath := filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "LEDGER_HTTP_ADDR="+addr, "LEDGER_DATA_DIR="+t.TempDir(), "NATS_URL="+natsURL,
		"DATABASE_URL="+databaseURL, "LEDGER_PARTITIONS="+strconv.Itoa(failoverPartitions), "LEDGER_REPLICAS=3",
		"LEDGER_INSTANCE="+name, "LEDGER_LOG_LEVEL=info", "LEDGER_LEASE_TTL="+failoverLeaseTTL())
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ledgerd: %v", err)
	}
	d := &daemon{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(d.done) }()
	t.Cleanup(func() {
		d.kill()
		b, _ := os.ReadFile(logPath)
		for line := range strings.Lines(string(b)) {
			if strings.Contains(line, "partition") || strings.Contains(line, "lease") || strings.Contains(line, "level=ERROR") {
				t.Logf("%s: %s", name, strings.TrimSpace(line))
			}
		}
	})
	cd := &clusterDaemon{name: name, base: "http://" + addr, d: d}
	waitHealthy(t, cd.base, cd.d)
	return cd
}

// failoverFault is one fault of TestClusterFailover and what it cost.
type failoverFault struct {
	what      string
	stall     time.Duration
	failed    int // publish attempts that failed (each re-sent)
	gaps      [failoverPartitions]time.Duration
	healthMax time.Duration
	recovered time.Duration // from the fault to the end of the window, every partition projecting
	extra     string
}

func (f failoverFault) String() string {
	gaps := make([]string, len(f.gaps))
	for p, g := range f.gaps {
		gaps[p] = fmt.Sprintf("p%d %.2fs", p, g.Seconds())
	}
	return fmt.Sprintf("%s: publish stall %.2fs (%d attempts failed, re-sent); projection gap %s; measured over %.1fs; slowest /healthz %s%s",
		f.what, f.stall.Seconds(), f.failed, strings.Join(gaps, ", "), f.recovered.Seconds(), f.healthMax.Round(time.Millisecond), f.extra)
}

// TestClusterFailover runs two ledgerd sharing 4 partitions (default lease
// TTL) on three nats-server processes (R3) and a shared Postgres, under a
// paced feed, and SIGKILLs in turn: the server leading STOCK_EVENTS, the
// server leading the lease bucket (each started again and caught up
// before the next fault), then the ledgerd holding partition 0. Every
// partition must project again after each fault, and at the end every
// acknowledged event is in the stream once and applied once. It logs, per
// fault, the longest publish stall, each partition's longest projection
// gap (acknowledged events past its checkpoint and no progress), and the
// slowest /healthz, with every change of what /healthz said.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster failover: not in -short")
	}
	dbURL := testDatabaseURL(t)
	bin := buildLedgerd(t)
	cl := startProcCluster(t, 3)
	a := startFailoverDaemon(t, bin, "ledgerd-a", cl.url(), dbURL)
	b := startFailoverDaemon(t, bin, "ledgerd-b", cl.url(), dbURL)
	daemons := map[string]*clusterDaemon{a.name: a, b.name: b}

	nc, js := connectJS(t, cl.url(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	waitShared(t, ctx, js)
	store, err := projections.OpenPostgres(ctx, dbURL, projections.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	pub, err := transport.NewPublisher(nc, transport.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	load := &failoverLoad{pub: pub, restocks: map[string]int{}, sales: map[string]int{}}
	var listings []ledger.Event
	for i := range failoverShops {
		listings = append(listings, ledger.Event{Type: ledger.Listing, Shop: failoverShop(i), SKU: "sku-1", Title: "Failover test",
			PriceFen: 1000, Stock: ledger.Int64(1_000_000), SalesForm: ledger.Spot, ShipWithinHours: 72})
	}
	if err := load.publish(ctx, listings); err != nil {
		t.Fatal(err)
	}
	w := &failoverWatch{t: t, store: store, load: load, since: time.Now(), lastHealth: map[string]string{}}
	for p := range w.lastMove {
		w.lastMove[p] = time.Now()
	}
	wctx, stopWatch := context.WithCancel(ctx)
	var watchers sync.WaitGroup
	watchers.Go(func() { w.watchCheckpoints(wctx) })
	for _, cd := range daemons {
		watchers.Go(func() { w.watchHealth(wctx, cd) })
	}
	stopLoad := make(chan struct{})
	loadErr := make(chan error, 1)
	go func() { loadErr <- load.run(ctx, stopLoad) }()
	waitFor(failoverWarmup)
	w.waitProjected(t, "warm-up")
	load.resetStall()
	w.window()

	var faults []failoverFault
	for _, stream := range []string{transport.EventStream, "KV_" + consumers.LeaseBucket} {
		faults = append(faults, killNATSLeader(t, ctx, cl, js, w, load, stream))
	}
	faults = append(faults, killLedgerd(t, ctx, js, w, load, daemons))

	close(stopLoad)
	if err := <-loadErr; err != nil {
		t.Fatal(err)
	}
	w.waitProjected(t, "end of load")
	stopWatch()
	watchers.Wait()
	for _, f := range faults {
		t.Logf("fault %s", f)
	}
	survivor := a
	if a.d.cmd.ProcessState != nil {
		survivor = b
	}
	checkFailoverCounts(t, cl.url(), survivor, load)
}

// waitShared waits until the two instances hold two partitions each.
func waitShared(t *testing.T, ctx context.Context, js jetstream.JetStream) {
	t.Helper()
	deadline := time.Now().Add(failoverRecoverMax)
	for {
		o := leaseOwners(ctx, js, failoverPartitions)
		count := map[string]int{}
		for _, name := range o {
			count[name]++
		}
		if len(o) == failoverPartitions && count["ledgerd-a"] == 2 && count["ledgerd-b"] == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions not shared 2 and 2 within %s: %v", failoverRecoverMax, o)
		}
		waitFor(100 * time.Millisecond)
	}
}

// killNATSLeader SIGKILLs the server leading stream, waits until every
// partition projected what was acknowledged meanwhile, measures, then
// starts the server again and waits until it caught up.
func killNATSLeader(t *testing.T, ctx context.Context, cl *procCluster, js jetstream.JetStream, w *failoverWatch, load *failoverLoad, stream string) failoverFault {
	t.Helper()
	leader := streamLeader(ctx, js, stream)
	p := cl.proc(leader)
	if p == nil {
		t.Fatalf("stream %s: leader %q is none of the servers", stream, leader)
	}
	also := []string{}
	for _, other := range []string{transport.EventStream, "KV_" + consumers.LeaseBucket} {
		if other != stream && streamLeader(ctx, js, other) == leader {
			also = append(also, other)
		}
	}
	f := failoverFault{what: fmt.Sprintf("SIGKILL of %s leading %s", leader, stream)}
	if len(also) > 0 {
		f.what += " (and " + strings.Join(also, ", ") + ")"
	}
	t.Logf("fault: %s", f.what)
	load.resetStall()
	w.window()
	killed := time.Now()
	p.kill()
	// The window spans the lease TTL and more: a lease that could not be
	// renewed lapses up to a TTL after the fault, and is taken again after.
	waitFor(failoverLeaseTTLDuration(t) + failoverTail)
	load.waitAcked(t, killed, f.what)
	w.waitProjected(t, f.what)
	f.recovered = time.Since(killed)
	waitFor(failoverTail)
	f.stall, f.failed = load.resetStall()
	f.gaps, f.healthMax = w.window()
	p.start(t)
	waitReplicasCurrent(t, js, transport.EventStream, "KV_"+consumers.LeaseBucket)
	// One fault at a time: the next kill must not find a partition's
	// consumer (an R3 group of its own) with a replica still catching up
	// on the restarted server, or it loses its quorum with the next
	// server down (seen: a lookup answering 10008 for over a minute).
	waitConsumersCurrent(t, js, transport.EventStream, failoverPartitions)
	w.waitProjected(t, "after "+leader+" restarted")
	load.resetStall()
	w.window()
	return f
}

// killLedgerd SIGKILLs the ledgerd holding partition 0 and waits until the
// other holds every partition and projected what was acknowledged.
func killLedgerd(t *testing.T, ctx context.Context, js jetstream.JetStream, w *failoverWatch, load *failoverLoad, daemons map[string]*clusterDaemon) failoverFault {
	t.Helper()
	owners := leaseOwners(ctx, js, failoverPartitions)
	victim := daemons[owners[0]]
	if victim == nil {
		t.Fatalf("partition 0 held by unknown instance %q", owners[0])
	}
	f := failoverFault{what: "SIGKILL of " + victim.name + " (lease TTL " + failoverLeaseTTL() + ")"}
	t.Logf("fault: %s, leases %v", f.what, owners)
	load.resetStall()
	w.window()
	killed := time.Now()
	victim.d.kill()
	deadline := killed.Add(failoverRecoverMax)
	for {
		o := leaseOwners(ctx, js, failoverPartitions)
		taken := len(o) == failoverPartitions
		for _, name := range o {
			taken = taken && name != victim.name
		}
		if taken {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions of %s not taken over within %s: %v", victim.name, failoverRecoverMax, o)
		}
		waitFor(20 * time.Millisecond)
	}
	f.extra = fmt.Sprintf("; leases taken %.2fs after", time.Since(killed).Seconds())
	w.waitProjected(t, f.what)
	f.recovered = time.Since(killed)
	waitFor(failoverTail)
	f.stall, f.failed = load.resetStall()
	f.gaps, f.healthMax = w.window()
	return f
}

// checkFailoverCounts checks that every acknowledged event is in the
// stream once and applied once: each shop's on-hand and committed units
// equal the restocks and sales acknowledged.
func checkFailoverCounts(t *testing.T, url string, survivor *clusterDaemon, load *failoverLoad) {
	t.Helper()
	load.mu.Lock()
	defer load.mu.Unlock()
	lost, dup := 0, 0
	for i := range failoverShops {
		s := failoverShop(i)
		status, body := doGet(t, fmt.Sprintf("%s/v1/shops/%s/skus/sku-1?min_seq=%d", survivor.base, s, load.lastSeq))
		var v struct {
			OnHand    int `json:"on_hand"`
			Committed int `json:"committed"`
		}
		if status != http.StatusOK || json.Unmarshal(body, &v) != nil {
			t.Fatalf("sku of %s: %d %s", s, status, body)
		}
		for _, c := range []struct{ got, want int }{{v.OnHand, 1_000_000 + load.restocks[s]}, {v.Committed, load.sales[s]}} {
			if c.got != c.want {
				t.Errorf("%s (partition %d): got %d, want %d", s, transport.Partition(s, failoverPartitions), c.got, c.want)
			}
			lost += max(0, c.want-c.got)
			dup += max(0, c.got-c.want)
		}
	}
	stored := streamIDCounts(t, url)
	for id, n := range stored {
		if n > 1 {
			dup += n - 1
			t.Errorf("event %s stored %d times", id, n)
		}
	}
	lost += max(0, load.acked-len(stored))
	t.Logf("failover: %d events acknowledged, %d distinct in the stream; lost %d, doubled %d", load.acked, len(stored), lost, dup)
	if lost != 0 || dup != 0 {
		t.Fatalf("lost %d, doubled %d: want 0 and 0", lost, dup)
	}
}
