package consumertest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger/transport"
)

// natsReadyTimeout bounds the start of a test's nats-server.
const natsReadyTimeout = 10 * time.Second

// StartNATS runs an in-process nats-server with JetStream for one test: a
// random loopback port, its store in the test's temporary directory, shut
// down when the test ends. With eventMaxBytes > 0 it also creates the
// ledger's streams, the event stream bounded to that size.
func StartNATS(t testing.TB, eventMaxBytes int64) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(natsReadyTimeout) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if eventMaxBytes > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), natsReadyTimeout)
		defer cancel()
		if err := transport.EnsureStreams(ctx, js, transport.StreamOptions{EventMaxBytes: eventMaxBytes}); err != nil {
			t.Fatal(err)
		}
	}
	return nc, js
}
