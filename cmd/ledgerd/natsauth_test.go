package main

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger"
	"stockledger/ledger/transport"
)

// permErrors collects the asynchronous permission errors of a connection.
type permErrors struct {
	mu   sync.Mutex
	errs []string
}

func (p *permErrors) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	p.mu.Lock()
	p.errs = append(p.errs, err.Error())
	p.mu.Unlock()
}

// waitFor polls until one collected error contains want.
func (p *permErrors) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, e := range p.errs {
			if strings.Contains(e, want) {
				p.mu.Unlock()
				return
			}
		}
		p.mu.Unlock()
		waitFor(10 * time.Millisecond)
	}
	t.Errorf("no permissions violation naming %q; got %v", want, p.errs)
}

// TestNATSPermissions loads testdata/nats/auth.conf into an embedded server:
// a feed publishes to its own shop, cannot publish into another shop's
// subjects (nothing stored), cannot read events nor touch the JetStream API;
// a dashboard can subscribe to its shop's views and nothing else.
func TestNATSPermissions(t *testing.T) {
	for name, pass := range map[string]string{"LEDGERD_NATS_PASSWORD": "ledgerd-pw", "FEED_SHOP_A_PASSWORD": "feed-a-pw",
		"FEED_SHOP_B_PASSWORD": "feed-b-pw", "DASHBOARD_SHOP_A_PASSWORD": "dash-a-pw"} {
		t.Setenv(name, pass)
	}
	opts, err := server.ProcessConfigFile(filepath.Join(repoRoot(t), "testdata", "nats", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.StoreDir, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, t.TempDir(), true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	defer s.Shutdown()
	connect := func(user, pass string, more ...nats.Option) (*nats.Conn, *permErrors) {
		t.Helper()
		pe := &permErrors{}
		nc, err := nats.Connect(s.ClientURL(), append(more, nats.UserInfo(user, pass), nats.ErrorHandler(pe.handler))...)
		if err != nil {
			t.Fatalf("connect as %s: %v", user, err)
		}
		t.Cleanup(nc.Close)
		return nc, pe
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	svcNC, _ := connect("ledgerd", "ledgerd-pw")
	svcJS, _ := jetstream.New(svcNC)
	if err := transport.EnsureStreams(ctx, svcJS, transport.StreamOptions{EventMaxBytes: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := nats.Connect(s.ClientURL(), nats.UserInfo("feed-shop-a", "wrong")); err == nil {
		t.Error("a wrong password connected")
	}

	feedNC, feedErrs := connect("feed-shop-a", "feed-a-pw", nats.CustomInboxPrefix("_INBOX_feed-shop-a"))
	pub, err := transport.NewPublisher(feedNC, transport.PublisherOptions{AckTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	own := []ledger.Event{{Type: ledger.Restock, Shop: "shop-a", SKU: "sku-1", Qty: ledger.Int64(5)}}
	if _, err := pub.Publish(ctx, own); err != nil {
		t.Fatalf("feed of shop-a publishing to shop-a: %v", err)
	}
	// Into shop-b: the server refuses the message; nothing is stored.
	feedJS, _ := jetstream.New(feedNC)
	other := `{"type":"restock","shop":"shop-b","sku":"sku-1","qty":5}`
	pctx, pcancel := context.WithTimeout(ctx, time.Second)
	_, err = feedJS.Publish(pctx, transport.EventSubject("shop-b", "sku-1"), []byte(other))
	pcancel()
	if err == nil {
		t.Error("feed of shop-a published into shop-b's subject and got an ack")
	}
	feedErrs.waitFor(t, `Permissions Violation for Publish to "stock.events.shop-b.sku-1"`)
	// Reading the event stream and the JetStream API are refused too.
	if _, err := feedNC.SubscribeSync(transport.EventSubjectRoot + ".>"); err == nil {
		feedErrs.waitFor(t, "Permissions Violation for Subscription")
	}
	dctx, dcancel := context.WithTimeout(ctx, time.Second)
	if err := feedJS.DeleteStream(dctx, transport.EventStream); err == nil {
		t.Error("feed of shop-a deleted the event stream")
	}
	dcancel()

	st, err := svcJS.Stream(ctx, transport.EventStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(transport.EventSubjectRoot+".>"))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Subjects; got[transport.EventSubject("shop-b", "sku-1")] != 0 || got[transport.EventSubject("shop-a", "sku-1")] != 1 {
		t.Errorf("stored per subject %v, want one shop-a event and no shop-b event", got)
	}

	// The dashboard: its shop's views only, no publishing.
	dashNC, dashErrs := connect("dashboard-shop-a", "dash-a-pw")
	views, err := dashNC.SubscribeSync("stock.view.shop-a.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := dashNC.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := svcNC.Publish(transport.ViewSubject("shop-a", "sku-1"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := views.NextMsg(5 * time.Second); err != nil {
		t.Errorf("dashboard did not get its shop's view: %v", err)
	}
	_, _ = dashNC.SubscribeSync("stock.view.shop-b.>")
	dashErrs.waitFor(t, `Permissions Violation for Subscription to "stock.view.shop-b.>"`)
	_ = dashNC.Publish(transport.EventSubject("shop-a", "sku-1"), []byte(other))
	dashErrs.waitFor(t, `Permissions Violation for Publish to "stock.events.shop-a.sku-1"`)
}
