package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger/transport"
)

// TestStorageReservation backs DEPLOY.md's storage figure: with the default
// sizes, the streams and buckets ledgerd creates reserve 11.625 GiB of file
// store on each server that holds a replica (every server, at R3), and the
// lease bucket, which has no bound, needs room beyond that: a
// max_file_store of 11.625 GiB refuses it, 12 GiB takes everything.
func TestStorageReservation(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		maxStore int64
		ok       bool
	}{{11*gib + 5*gib/8, false}, {12 * gib, true}} {
		reserved, err := ensureAll(t, c.maxStore)
		t.Logf("max_file_store %.3f GiB: reserved %.3f GiB, %v", float64(c.maxStore)/gib, float64(reserved)/gib, err)
		if (err == nil) != c.ok {
			t.Errorf("max_file_store %.3f GiB: %v; want ok %v", float64(c.maxStore)/gib, err, c.ok)
		}
		if c.ok && reserved != 11*gib+5*gib/8 {
			t.Errorf("reserved %d bytes, want 11.625 GiB: DEPLOY.md's storage figure needs updating", reserved)
		}
	}
}

// ensureAll creates what ledgerd creates on a server bounded to maxStore
// and returns the file store reserved.
func ensureAll(t *testing.T, maxStore int64) (uint64, error) {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true, JetStreamMaxStore: maxStore})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	defer s.Shutdown()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = transport.EnsureStreams(ctx, js, transport.StreamOptions{})
	if err == nil {
		_, err = transport.EnsureViewBucket(ctx, js, transport.StreamOptions{})
	}
	if err == nil { // as consumers.Partitioned makes it
		_, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "LEDGER_PARTITIONS", History: 1,
			TTL: 5 * time.Second, Storage: jetstream.FileStorage})
	}
	ai, aerr := js.AccountInfo(ctx)
	if aerr != nil {
		t.Fatal(aerr)
	}
	return ai.Tier.ReservedStore, err
}
