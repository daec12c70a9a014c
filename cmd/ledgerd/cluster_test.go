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
	"strconv"
	"strings"
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
