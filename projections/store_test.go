package projections_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"stockledger/projections"
	"stockledger/projections/pgtest"
	"stockledger/projections/storetest"
)

func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) projections.Store { return projections.NewMemoryStore() })
}

func TestPostgresStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) projections.Store {
		url, schema := pgtest.Open(t)
		s, err := projections.OpenPostgres(t.Context(), url, projections.PostgresOptions{Schema: schema})
		if err != nil {
			t.Fatalf("OpenPostgres(schema %s): %v", schema, err)
		}
		return s
	})
}

// TestPostgresMigrationsOnce starts instances together on one schema, then
// again: every start succeeds and each migration is recorded once.
func TestPostgresMigrationsOnce(t *testing.T) {
	url, schema := pgtest.Open(t)
	const instances = 4
	for round := range 2 {
		var wg sync.WaitGroup
		for i := range instances {
			wg.Go(func() {
				s, err := projections.OpenPostgres(t.Context(), url, projections.PostgresOptions{Schema: schema, MaxConns: 2})
				if err != nil {
					t.Errorf("round %d: instance %d: OpenPostgres: %v", round, i, err)
					return
				}
				defer s.Close()
				if err := s.Ping(t.Context()); err != nil {
					t.Errorf("round %d: instance %d: Ping: %v", round, i, err)
				}
			})
		}
		wg.Wait()
	}
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var versions, tables int
	err = conn.QueryRow(t.Context(), `SELECT count(*) FROM `+pgx.Identifier{schema, "schema_migrations"}.Sanitize()).Scan(&versions)
	if err != nil {
		t.Fatalf("count migrations: %v", err)
	}
	files, err := filepath.Glob(filepath.Join("migrations", "*.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := versions, len(files); got != want {
		t.Errorf("schema_migrations rows = %d, want %d", got, want)
	}
	err = conn.QueryRow(t.Context(), `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1`, schema).Scan(&tables)
	if err != nil {
		t.Fatalf("count tables: %v", err)
	}
	if got, want := tables, 9; got != want { // schema_migrations, checkpoints, skus, alerts, alert_outbox, lines, applied_keys, shops, sync_outbox
		t.Errorf("tables in schema %s = %d, want %d", schema, got, want)
	}
}

func TestOpenPostgresRefusesBadOptions(t *testing.T) {
	for _, o := range []projections.PostgresOptions{
		{Schema: `x"; DROP TABLE y; --`},
		{Schema: "1abc"},
		{MaxConns: -1},
		{MaxConns: 100000},
	} {
		// No server is needed: the options are checked before connecting.
		s, err := projections.OpenPostgres(t.Context(), "postgres://nobody@127.0.0.1:1/none", o)
		if err == nil {
			s.Close()
			t.Errorf("OpenPostgres(%+v) succeeded, want an error", o)
		}
	}
}

func TestIsTransient(t *testing.T) {
	pg := func(code string) error { return fmt.Errorf("commit: %w", &pgconn.PgError{Code: code}) }
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"connection failure 08006", pg("08006"), true},
		{"connection does not exist 08003", pg("08003"), true},
		{"serialization 40001", pg("40001"), true},
		{"deadlock 40P01", pg("40P01"), true},
		{"admin shutdown 57P01", pg("57P01"), true},
		{"crash shutdown 57P02", pg("57P02"), true},
		{"cannot connect now 57P03", pg("57P03"), true},
		{"too many connections 53300", pg("53300"), true},
		{"unique violation 23505", pg("23505"), false},
		{"syntax error 42601", pg("42601"), false},
		{"bad password 28P01", pg("28P01"), false},
		{"query canceled 57014", pg("57014"), false},
		{"net error", fmt.Errorf("x: %w", &net.OpError{Op: "dial", Err: errors.New("connection refused")}), true},
		{"eof", fmt.Errorf("x: %w", io.EOF), true},
		{"unexpected eof", io.ErrUnexpectedEOF, true},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), true},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), false},
		{"checkpoint moved", projections.ErrCheckpointMoved, false},
		{"other", errors.New("boom"), false},
	} {
		if got := projections.IsTransient(tc.err); got != tc.want {
			t.Errorf("IsTransient(%s: %v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestIsTransientDeadServer checks the error a store returns when nothing
// listens at all.
func TestIsTransientDeadServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	_, err = projections.OpenPostgres(t.Context(), "postgres://postgres@"+addr+"/test?sslmode=disable", projections.PostgresOptions{})
	if err == nil {
		t.Fatal("OpenPostgres on a closed port succeeded")
	}
	if !projections.IsTransient(err) {
		t.Errorf("IsTransient(%v) = false, want true", err)
	}
}
