package consumers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/consumers/consumertest"
	"stockledger/ledger/transport"
	"stockledger/projections"
	"stockledger/projections/pgtest"
)

// outboxCheckpoint is the checkpoint of the test's outbox entries.
const outboxCheckpoint = 9

// outboxAlerts are the alert changes of the test: a message with every
// character Go and Postgres escape differently, a time not in UTC.
func outboxAlerts() []projections.Alert {
	raised := time.Date(2025, 3, 1, 18, 0, 0, 123456000, time.FixedZone("CST", 8*3600))
	resolved := raised.Add(time.Hour).UTC()
	return []projections.Alert{
		{ID: "a1", Kind: projections.Oversold, Shop: "s1", SKU: "k1", State: projections.AlertOpen, RaisedAt: raised,
			Message:    "sold 3 < 5 && 7 > 2, \"q\" \\ \t\n\b\f\x01\x7f 中文 \u2028\u2029",
			UnitsShort: 2, ExposureFen: 1500, Seq: 7, UpdatedSeq: 7, Rev: 1},
		{ID: "a2", Kind: projections.ShipLate, Shop: "s1", SKU: "k2", OrderID: "o-1", State: projections.AlertResolved,
			RaisedAt: raised.UTC(), ResolvedAt: &resolved, Message: "late", UnitsShort: 1, ExposureFen: 500,
			Seq: 8, UpdatedSeq: 9, Rev: 3},
	}
}

// outboxSync are the instructions of the test: k2's is cleared after it.
func outboxSync() []projections.SyncInstruction {
	return []projections.SyncInstruction{
		{Shop: "s1", SKU: "k1", Listed: 8, Sellable: 3, Delta: -5, Seq: 7, Key: projections.SyncKey("s1", "k1", 7)},
		{Shop: "s1", SKU: "k2", Listed: 4, Sellable: 2, Delta: -2, Seq: 8, Key: projections.SyncKey("s1", "k2", 8)},
		{Shop: "s1", SKU: "k2", Listed: 4, Sellable: 4, Seq: 9, Key: projections.SyncKey("s1", "k2", 9), Clear: true},
	}
}

// TestOutboxPublishesStoredBytes: what the publishers send is json.Marshal
// of each alert change and instruction, byte for byte, with its subject,
// Nats-Msg-Id and checkpoint, from either store, and from pending rows a
// Postgres store held in jsonb before migration 006.
func TestOutboxPublishesStoredBytes(t *testing.T) {
	committed := func(t *testing.T, s projections.Store) projections.Store {
		b := &projections.Batch{Projector: "p", LastSeq: outboxCheckpoint, Alerts: outboxAlerts(), Sync: outboxSync()}
		if err := projections.Commit(t.Context(), s, b); err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) projections.Store
	}{
		{"memory", func(t *testing.T) projections.Store { return committed(t, projections.NewMemoryStore()) }},
		{"postgres", func(t *testing.T) projections.Store { s, _ := openPostgres(t); return committed(t, s) }},
		{"postgres migrated from 005", migratedOutbox},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := tc.store(t)
			_, js := consumertest.StartNATS(t, 1<<20)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if n, last, err := (alertSource{js: js, outbox: store}).flush(ctx, 0, 0); err != nil || n != len(outboxAlerts()) || last != outboxCheckpoint {
				t.Fatalf("alert flush = %d, %d, %v; want %d, %d", n, last, err, len(outboxAlerts()), outboxCheckpoint)
			}
			if n, last, err := (&syncSource{js: js, outbox: store}).flush(ctx, 0, 0); err != nil || n != len(outboxSync()) || last != outboxCheckpoint {
				t.Fatalf("sync flush = %d, %d, %v; want %d, %d", n, last, err, len(outboxSync()), outboxCheckpoint)
			}
			checkAlertMessages(t, ctx, js)
			checkSyncMessages(t, ctx, js)
			if pa, _ := store.PendingAlerts(ctx, 10); len(pa) != 0 {
				t.Errorf("%d alert changes left in the outbox after publishing", len(pa))
			}
			if ps, _ := store.PendingSync(ctx, 10); len(ps) != 0 {
				t.Errorf("%d instructions left in the outbox after publishing", len(ps))
			}
		})
	}
}

// migratedOutbox returns a Postgres store opened on a schema at migration
// 005 that held the test's alert changes and instructions in jsonb, as the
// store wrote them then.
func migratedOutbox(t *testing.T) projections.Store {
	ctx := t.Context()
	url, schema := pgtest.Open(t)
	pgtest.MigrateTo(t, url, schema, "../projections/migrations", 5)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, a := range outboxAlerts() {
		doc, _ := json.Marshal(a)
		sql := `INSERT INTO ` + pgx.Identifier{schema, "alert_outbox"}.Sanitize() + ` (alert, checkpoint) VALUES ($1::text::jsonb, $2)`
		if _, err := conn.Exec(ctx, sql, string(doc), outboxCheckpoint); err != nil {
			t.Fatal(err)
		}
	}
	for _, in := range outboxSync() {
		doc, _ := json.Marshal(in)
		sql := `INSERT INTO ` + pgx.Identifier{schema, "sync_outbox"}.Sanitize() + ` (instruction, clear, checkpoint) VALUES ($1::text::jsonb, $2, $3)`
		if _, err := conn.Exec(ctx, sql, string(doc), in.Clear, outboxCheckpoint); err != nil {
			t.Fatal(err)
		}
	}
	s, err := projections.OpenPostgres(ctx, url, projections.PostgresOptions{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// checkAlertMessages compares the alert stream with outboxAlerts.
func checkAlertMessages(t *testing.T, ctx context.Context, js jetstream.JetStream) {
	t.Helper()
	st, err := js.Stream(ctx, transport.AlertStream)
	if err != nil {
		t.Fatal(err)
	}
	alerts := outboxAlerts()
	if got := st.CachedInfo().State.Msgs; got != uint64(len(alerts)) {
		t.Fatalf("alert stream holds %d messages, want %d", got, len(alerts))
	}
	for i, a := range alerts {
		m, err := st.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(a)
		if !bytes.Equal(m.Data, want) {
			t.Errorf("alert %s: published\n%s\nwant json.Marshal's\n%s", a.ID, m.Data, want)
		}
		checkHeaders(t, m, transport.AlertSubject(a.Shop, string(a.Kind)), a.ID+":"+strconv.Itoa(a.Rev))
	}
}

// checkSyncMessages compares the sync stream and bucket with outboxSync:
// the instructions on the stream, k1's in the bucket, k2's cleared.
func checkSyncMessages(t *testing.T, ctx context.Context, js jetstream.JetStream) {
	t.Helper()
	st, err := js.Stream(ctx, transport.SyncStream)
	if err != nil {
		t.Fatal(err)
	}
	ins := outboxSync()[:2]
	if got := st.CachedInfo().State.Msgs; got != uint64(len(ins)) {
		t.Fatalf("sync stream holds %d messages, want %d (a clear is not published)", got, len(ins))
	}
	for i, in := range ins {
		m, err := st.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(in)
		if !bytes.Equal(m.Data, want) {
			t.Errorf("instruction %s: published\n%s\nwant json.Marshal's\n%s", in.Key, m.Data, want)
		}
		checkHeaders(t, m, transport.SyncSubject(in.Shop, in.SKU), in.Key)
	}
	kv, err := js.KeyValue(ctx, transport.SyncTargetsBucket)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(ins[0])
	if e, err := kv.Get(ctx, "s1.k1"); err != nil || !bytes.Equal(e.Value(), want) {
		t.Errorf("bucket s1.k1: %v; want json.Marshal's %s", err, want)
	}
	if _, err := kv.Get(ctx, "s1.k2"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("bucket s1.k2 after its clear: %v, want no key", err)
	}
}

func checkHeaders(t *testing.T, m *jetstream.RawStreamMsg, subject, msgID string) {
	t.Helper()
	if m.Subject != subject || m.Header.Get(jetstream.MsgIDHeader) != msgID ||
		m.Header.Get(transport.HeaderCheckpoint) != strconv.Itoa(outboxCheckpoint) {
		t.Errorf("message on %s, Nats-Msg-Id %q, checkpoint %q; want %s, %q, %d", m.Subject,
			m.Header.Get(jetstream.MsgIDHeader), m.Header.Get(transport.HeaderCheckpoint), subject, msgID, outboxCheckpoint)
	}
}
