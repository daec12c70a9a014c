package consumertest

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// clusterReadyTimeout bounds the wait for a test cluster's JetStream meta
// group to have a leader every server follows.
const clusterReadyTimeout = 30 * time.Second

// Cluster is n nats-server instances in this process, routed to one another
// over loopback, with JetStream: what R3 streams need.
type Cluster struct {
	Servers []*server.Server
}

// StartCluster runs a cluster of n in-process nats-servers for one test, on
// random loopback ports, stores in the test's temporary directory, shut down
// when the test ends. It returns once JetStream's meta group has a leader
// that every server follows. Route ports are picked free beforehand: every
// server routes to every other.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	ports := make([]int, n)
	routes := make([]string, n)
	for i := range ports {
		ports[i] = FreePort(t)
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", ports[i])
	}
	c := &Cluster{}
	for i := range n {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "ledger-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(s.Shutdown)
		c.Servers = append(c.Servers, s)
	}
	for _, s := range c.Servers {
		if !s.ReadyForConnections(natsReadyTimeout) {
			t.Fatalf("server %s not ready", s.Name())
		}
	}
	deadline := time.Now().Add(clusterReadyTimeout)
	for !c.ready() {
		if time.Now().After(deadline) {
			t.Fatalf("JetStream meta group has no leader within %s", clusterReadyTimeout)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
	return c
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ready reports whether the meta group has a leader every server follows.
func (c *Cluster) ready() bool {
	leader, current := false, true
	for _, s := range c.Servers {
		leader = leader || s.JetStreamIsLeader()
		current = current && s.JetStreamIsCurrent()
	}
	return leader && current
}

// URL is every server's client URL, comma-separated, for nats.Connect.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		urls[i] = s.ClientURL()
	}
	return strings.Join(urls, ",")
}
