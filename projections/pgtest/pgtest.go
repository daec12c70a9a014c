// Package pgtest gives a test its own schema in a real Postgres. The server
// is LEDGER_TEST_DATABASE_URL, else the local default; a test that cannot
// reach it is skipped, except under CI=true, where it fails. It is for tests
// only.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// URLEnv names the variable that points the tests at a Postgres.
	URLEnv = "LEDGER_TEST_DATABASE_URL"
	// DefaultURL is the server tried when URLEnv is empty.
	DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	// connectTimeout bounds reaching the server; past it the test skips
	// (or fails under CI).
	connectTimeout = 5 * time.Second
	// cleanupTimeout bounds dropping the schema after the test.
	cleanupTimeout = 30 * time.Second
	// migrateTimeout bounds MigrateTo.
	migrateTimeout = 60 * time.Second
	// schemaRandomBytes makes schema names unique: "t_" and 16 hex digits.
	schemaRandomBytes = 8
)

// Open returns the URL of the test Postgres and the name of a schema created
// for this test alone, dropped with everything in it when the test ends.
// Cleanups registered after Open (closing a store) run before the drop.
// When the server cannot be reached Open skips the test, or fails it when the
// environment has CI=true.
func Open(t testing.TB) (url, schema string) {
	t.Helper()
	url = os.Getenv(URLEnv)
	if url == "" {
		url = DefaultURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pgtest: Postgres at %s (%s) is unreachable and CI=true: %v", redact(url), URLEnv, err)
		}
		t.Skipf("pgtest: skipping, Postgres at %s is unreachable (set %s to a reachable server): %v", redact(url), URLEnv, err)
	}
	defer conn.Close(context.Background())

	b := make([]byte, schemaRandomBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	schema = "t_" + hex.EncodeToString(b)
	ident := pgx.Identifier{schema}.Sanitize()
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+ident); err != nil {
		t.Fatalf("pgtest: create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Errorf("pgtest: drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, `DROP SCHEMA `+ident+` CASCADE`); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", schema, err)
		}
	})
	return url, schema
}

// redact hides a password in url for messages.
func redact(url string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return "(unparsable " + URLEnv + ")"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

// MigrateTo brings schema to an older version of the store's schema, for a
// test of a migration on the rows that version holds: it applies the files
// of dir (the store's migrations directory) whose version is at most
// version, in order, and records them in schema_migrations as the store's
// OpenPostgres does, which then applies only the later ones.
func MigrateTo(t testing.TB, url, schema, dir string, version int) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "[0-9][0-9][0-9]_*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("pgtest: migrations in %s: %v (%d files)", dir, err, len(files))
	}
	sort.Strings(files)
	ctx, cancel := context.WithTimeout(context.Background(), migrateTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("pgtest: migrate schema %s: %v", schema, err)
	}
	defer conn.Close(context.Background())
	// The same table as the store's (projections.OpenPostgres).
	setup := `SET search_path TO ` + pgx.Identifier{schema}.Sanitize() + `;
		CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL)`
	if _, err := conn.Exec(ctx, setup); err != nil {
		t.Fatalf("pgtest: migrate schema %s: %v", schema, err)
	}
	for _, f := range files {
		v, err := strconv.Atoi(filepath.Base(f)[:3])
		if err != nil || v > version {
			continue
		}
		sql, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		// No arguments: the simple protocol, which runs several statements.
		if _, err := conn.Exec(ctx, string(sql)); err != nil {
			t.Fatalf("pgtest: apply %s to schema %s: %v", filepath.Base(f), schema, err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())`, v); err != nil {
			t.Fatalf("pgtest: record %s in schema %s: %v", filepath.Base(f), schema, err)
		}
	}
}
