package projections_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"stockledger/projections"
	"stockledger/projections/pgtest"
)

// oldOutboxAlerts are alert changes as a store before migration 006 held
// them: jsonb documents of the alerts' JSON. Their messages hold every
// character the two encoders escape differently, and their times a zone
// that is not UTC.
func oldOutboxAlerts() []projections.Alert {
	raised := time.Date(2025, 3, 1, 18, 0, 0, 123456000, time.FixedZone("CST", 8*3600))
	resolved := raised.Add(time.Hour).UTC()
	return []projections.Alert{
		{ID: "a1", Kind: projections.Oversold, Shop: "s1", SKU: "k1", State: projections.AlertOpen, RaisedAt: raised,
			Message:    "sold 3 < 5 && 7 > 2, \"quoted\" \\ back\tslash\nnew\b\f\x01\x1f\x7f 中文 \u2028\u2029 é",
			UnitsShort: 2, ExposureFen: 1500, Seq: 7, UpdatedSeq: 7, Rev: 1},
		{ID: "a2", Kind: projections.ShipLate, Shop: "s1", SKU: "k2", OrderID: "o-1:x.y", State: projections.AlertResolved,
			RaisedAt: raised.UTC(), ResolvedAt: &resolved, Message: "late", UnitsShort: 1, ExposureFen: 500,
			Seq: 8, UpdatedSeq: 9, Rev: 3},
	}
}

// oldOutboxSync are sync instructions as a store before migration 006 held
// them, a clear last.
func oldOutboxSync() []projections.SyncInstruction {
	return []projections.SyncInstruction{
		{Shop: "s1", SKU: "k1", Listed: 8, Sellable: 3, Delta: -5, Seq: 7, Key: projections.SyncKey("s1", "k1", 7)},
		{Shop: "s1", SKU: "k2", Listed: 4, Sellable: 4, Seq: 9, Key: projections.SyncKey("s1", "k2", 9), Clear: true},
	}
}

// TestMigrationOutboxBytes starts from a schema at migration 005 with
// pending outbox rows in jsonb, as the store wrote them then: after
// OpenPostgres migrates it, each row reads back with the bytes the
// publisher sent for it before (json.Marshal of the decoded alert or
// instruction) and its routing columns, oldest first, and later entries
// follow them.
func TestMigrationOutboxBytes(t *testing.T) {
	ctx := t.Context()
	url, schema := pgtest.Open(t)
	pgtest.MigrateTo(t, url, schema, "migrations", 5)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	alerts, sync := oldOutboxAlerts(), oldOutboxSync()
	for _, a := range alerts {
		doc, _ := json.Marshal(a)
		_, err := conn.Exec(ctx, `INSERT INTO `+pgx.Identifier{schema, "alert_outbox"}.Sanitize()+` (alert, checkpoint) VALUES ($1::text::jsonb, $2)`, string(doc), a.UpdatedSeq)
		if err != nil {
			t.Fatalf("insert old alert %s: %v", a.ID, err)
		}
	}
	for _, in := range sync {
		doc, _ := json.Marshal(in)
		_, err := conn.Exec(ctx, `INSERT INTO `+pgx.Identifier{schema, "sync_outbox"}.Sanitize()+` (instruction, clear, checkpoint) VALUES ($1::text::jsonb, $2, $3)`, string(doc), in.Clear, in.Seq)
		if err != nil {
			t.Fatalf("insert old instruction %s: %v", in.Key, err)
		}
	}

	s, err := projections.OpenPostgres(ctx, url, projections.PostgresOptions{Schema: schema})
	if err != nil {
		t.Fatalf("OpenPostgres on a schema at 005: %v", err)
	}
	defer s.Close()
	later := projections.Alert{ID: "a3", Kind: projections.RecountMismatch, Shop: "s2", SKU: "k3", State: projections.AlertOpen,
		RaisedAt: time.Date(2025, 3, 2, 0, 0, 0, 0, time.UTC), Message: "recount 2 < 3", UnitsShort: 1, Seq: 20, UpdatedSeq: 20, Rev: 1}
	err = projections.Commit(ctx, s, &projections.Batch{Projector: "p", LastSeq: 20, Alerts: []projections.Alert{later},
		Sync: []projections.SyncInstruction{{Shop: "s2", SKU: "k3", Listed: 1, Sellable: 0, Delta: -1, Seq: 20, Key: projections.SyncKey("s2", "k3", 20)}}})
	if err != nil {
		t.Fatalf("commit after the migration: %v", err)
	}

	pa, err := s.PendingAlerts(ctx, 10)
	if err != nil || len(pa) != 3 {
		t.Fatalf("PendingAlerts = %d entries, %v; want 3", len(pa), err)
	}
	for i, a := range append(alerts, later) {
		want, _ := json.Marshal(a)
		got := pa[i]
		if !bytes.Equal(got.Data, want) {
			t.Errorf("alert %s: message\n got %s\nwant %s", a.ID, got.Data, want)
		}
		if got.AlertID != a.ID || got.Rev != a.Rev || got.Shop != a.Shop || got.Kind != a.Kind || (i > 0 && got.ID <= pa[i-1].ID) {
			t.Errorf("alert %s: entry %+v, want id %s rev %d shop %s kind %s after id %d", a.ID, got, a.ID, a.Rev, a.Shop, a.Kind, pa[max(i-1, 0)].ID)
		}
	}
	if pa[0].Checkpoint != 7 || pa[2].Checkpoint != 20 {
		t.Errorf("checkpoints %d, %d: want 7 (kept) and 20", pa[0].Checkpoint, pa[2].Checkpoint)
	}

	ps, err := s.PendingSync(ctx, 10)
	if err != nil || len(ps) != 3 {
		t.Fatalf("PendingSync = %d entries, %v; want 3", len(ps), err)
	}
	for i, in := range sync {
		want, _ := json.Marshal(in)
		got := ps[i]
		if !bytes.Equal(got.Data, want) || got.Shop != in.Shop || got.SKU != in.SKU || got.Seq != in.Seq || got.Key != in.Key ||
			got.Clear != in.Clear || got.Checkpoint != in.Seq {
			t.Errorf("instruction %s: entry %+v (%s), want %+v (%s)", in.Key, got, got.Data, in, want)
		}
	}
	if ps[2].ID <= ps[1].ID || ps[2].Key != projections.SyncKey("s2", "k3", 20) {
		t.Errorf("entry after the migration %+v: want s2/k3 at 20, after id %d", ps[2], ps[1].ID)
	}
}
