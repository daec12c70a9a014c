package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"stockledger/consumers/consumertest"
	"stockledger/ledger/transport"
)

// TestEnsureViewBucket makes the view bucket on one server: its stream
// persists asynchronously, a second start binds to it unchanged, and it
// works as a key-value bucket.
func TestEnsureViewBucket(t *testing.T) {
	_, js := consumertest.StartNATS(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		if _, err := transport.EnsureViewBucket(ctx, js, transport.StreamOptions{EventMaxBytes: 64 << 20}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := js.Stream(ctx, "KV_"+transport.ViewBucket)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.PersistMode; got != jetstream.AsyncPersistMode {
		t.Errorf("persist mode %v, want async", got)
	}
	kv, err := js.KeyValue(ctx, transport.ViewBucket)
	if err != nil {
		t.Fatal(err)
	}
	key := transport.ViewKey("shop-1", "sku-1")
	for _, v := range []string{`{"listed":1}`, `{"listed":2}`} {
		if _, err := kv.Put(ctx, key, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Value()) != `{"listed":2}` {
		t.Errorf("value %s, want the latest", e.Value())
	}
}
