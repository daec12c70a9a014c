package projections

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrationFiles holds the schema, applied in order by OpenPostgres. go:embed
// needs a package-level variable; it is read-only.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationName is the file name of a migration: its version, then a name.
var migrationName = regexp.MustCompile(`^([0-9]{3})_[a-z0-9_]+\.sql$`)

// schemaName is what PostgresOptions.Schema accepts: a plain identifier of at
// most 63 bytes (Postgres cuts longer names).
var schemaName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// Pool settings of the Postgres store, set explicitly rather than left to
// pgxpool's defaults.
const (
	// pgDefaultMaxConns is the pool size when PostgresOptions.MaxConns is 0:
	// one projector writer and a few concurrent HTTP reads.
	pgDefaultMaxConns int32 = 8
	// pgMaxConnsMax bounds PostgresOptions.MaxConns; Postgres' own default
	// max_connections is 100.
	pgMaxConnsMax int32 = 256
	// pgMaxConnIdleTime closes a connection idle this long.
	pgMaxConnIdleTime = 5 * time.Minute
	// pgMaxConnLifetime recycles every connection this often (failover, DNS).
	pgMaxConnLifetime = time.Hour
	// pgHealthCheckPeriod is how often idle connections are checked.
	pgHealthCheckPeriod = 30 * time.Second
	// pgConnectTimeout bounds one connection attempt when the URL sets no
	// connect_timeout.
	pgConnectTimeout = 10 * time.Second
	// pgMigrationLock is the first key of the advisory lock that serialises
	// migrations; the second is a hash of the schema, so that instances of
	// different schemas do not wait for each other.
	pgMigrationLock int32 = 0x534b55 // "SKU"
)

// PostgresOptions configures OpenPostgres.
type PostgresOptions struct {
	// Schema, when not empty, is created if missing and is the search_path
	// of every pooled connection: the store's tables live there. It must
	// match ^[A-Za-z_][A-Za-z0-9_]{0,62}$.
	Schema string
	// MaxConns bounds the pool; 0 means 8. It overrides a pool_max_conns in
	// the URL.
	MaxConns int32
}

// PostgresStore is the read model in Postgres (pgx/v5). It is safe for
// concurrent use. Times are kept to the microsecond (timestamptz) and read
// back in UTC; the SKU fold state is stored whole as JSON and keeps its times
// exactly.
type PostgresStore struct {
	pool *pgxpool.Pool
}

// OpenPostgres connects to the database at url, creates o.Schema if it is
// set and missing, and applies every embedded migration not yet applied, each
// once and in its own transaction, under an advisory lock so that instances
// starting together do not race. The caller closes the store.
func OpenPostgres(ctx context.Context, url string, o PostgresOptions) (*PostgresStore, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err) // pgconn redacts the password
	}
	switch {
	case o.MaxConns == 0:
		cfg.MaxConns = pgDefaultMaxConns
	case o.MaxConns < 0 || o.MaxConns > pgMaxConnsMax:
		return nil, fmt.Errorf("open postgres: max conns %d: must be from 1 to %d (0 for %d)", o.MaxConns, pgMaxConnsMax, pgDefaultMaxConns)
	default:
		cfg.MaxConns = o.MaxConns
	}
	cfg.MinConns = 0
	cfg.MaxConnIdleTime = pgMaxConnIdleTime
	cfg.MaxConnLifetime = pgMaxConnLifetime
	cfg.HealthCheckPeriod = pgHealthCheckPeriod
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = pgConnectTimeout
	}
	if o.Schema != "" {
		if !schemaName.MatchString(o.Schema) {
			return nil, fmt.Errorf("open postgres: schema %q: must match %s", o.Schema, schemaName)
		}
		cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{o.Schema}.Sanitize()
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	p := &PostgresStore{pool: pool}
	if err := p.migrate(ctx, o.Schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	return p, nil
}

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var out []migration
	for _, e := range entries { // ReadDir sorts by name, so by version
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q: name must match %s", e.Name(), migrationName)
		}
		v, _ := strconv.Atoi(m[1]) // three digits: cannot fail
		if len(out) > 0 && out[len(out)-1].version == v {
			return nil, fmt.Errorf("migration file %q: version %d used twice", e.Name(), v)
		}
		b, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", e.Name(), err)
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	return out, nil
}

// lockMigrations takes the migration lock until the end of the transaction.
// Caller holds tx.
func lockMigrations(ctx context.Context, tx pgx.Tx, schema string) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1::integer, hashtext($2))`, pgMigrationLock, schema); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	return nil
}

// migrate creates the schema and the schema_migrations table, then applies
// every migration not yet recorded there.
func (p *PostgresStore) migrate(ctx context.Context, schema string) error {
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if err := lockMigrations(ctx, tx, schema); err != nil {
			return err
		}
		if schema != "" {
			// An identifier cannot be a parameter; schema matched schemaName
			// and is quoted.
			if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize()); err != nil {
				return fmt.Errorf("create schema %q: %w", schema, err)
			}
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL
		)`)
		if err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	ms, err := migrations()
	if err != nil {
		return err
	}
	for _, m := range ms {
		err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
			if err := lockMigrations(ctx, tx, schema); err != nil {
				return err
			}
			var applied bool
			err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, m.version).Scan(&applied)
			if err != nil || applied {
				return err
			}
			// No arguments: pgx sends the file with the simple protocol,
			// which runs several statements.
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())`, m.version)
			return err
		})
		if err != nil {
			return fmt.Errorf("apply migration %s: %w", m.name, err)
		}
	}
	return nil
}

// Checkpoint implements Writer.
func (p *PostgresStore) Checkpoint(ctx context.Context, projector string) (uint64, error) {
	var seq uint64
	err := p.pool.QueryRow(ctx, `SELECT seq FROM checkpoints WHERE projector = $1`, projector).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read checkpoint of %q: %w", projector, err)
	}
	return seq, nil
}

const sqlAlertColumns = `id, kind, shop, sku, order_id, state, raised_at, resolved_at, message, units_short, exposure_fen, seq, updated_seq, rev`

const (
	// sqlCheckpointMove moves an existing checkpoint from $3 to $2.
	sqlCheckpointMove = `UPDATE checkpoints SET seq = $2 WHERE projector = $1 AND seq = $3`
	// sqlCheckpointStart writes a projector's first checkpoint, or moves one
	// still at 0: a missing checkpoint is 0.
	sqlCheckpointStart = `INSERT INTO checkpoints (projector, seq) VALUES ($1, $2)
		ON CONFLICT (projector) DO UPDATE SET seq = EXCLUDED.seq WHERE checkpoints.seq = 0`

	// sqlUpsertSKUs and sqlUpsertLines write every changed SKU and every
	// dirty line of a batch in one statement each: the rows travel as one
	// array per column (binary, no per-row parse or bind) and are unnested
	// server-side. A batch names each SKU and each line at most once, as
	// ON CONFLICT DO UPDATE requires.
	sqlUpsertSKUs = `INSERT INTO skus (shop, sku, state, next_due, title, status, sales_form,
		ship_within_hours, ship_within_days, price_fen, listed, on_hand, committed, available,
		capacity, presale_committed, capacity_left, open_orders, late_orders, exposure_fen,
		open_alerts, last_seq, updated_at, presale_shipped, safety_stock, sellable)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::timestamptz[], $5::text[], $6::text[],
		$7::text[], $8::integer[], $9::integer[], $10::bigint[], $11::bigint[], $12::bigint[],
		$13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[], $18::bigint[],
		$19::bigint[], $20::bigint[], $21::bigint[], $22::bigint[], $23::timestamptz[],
		$24::bigint[], $25::bigint[], $26::bigint[])
		ON CONFLICT (shop, sku) DO UPDATE SET state = EXCLUDED.state, next_due = EXCLUDED.next_due,
		title = EXCLUDED.title, status = EXCLUDED.status, sales_form = EXCLUDED.sales_form,
		ship_within_hours = EXCLUDED.ship_within_hours, ship_within_days = EXCLUDED.ship_within_days,
		price_fen = EXCLUDED.price_fen, listed = EXCLUDED.listed, on_hand = EXCLUDED.on_hand,
		committed = EXCLUDED.committed, available = EXCLUDED.available, capacity = EXCLUDED.capacity,
		presale_committed = EXCLUDED.presale_committed, capacity_left = EXCLUDED.capacity_left,
		open_orders = EXCLUDED.open_orders, late_orders = EXCLUDED.late_orders,
		exposure_fen = EXCLUDED.exposure_fen, open_alerts = EXCLUDED.open_alerts,
		last_seq = EXCLUDED.last_seq, updated_at = EXCLUDED.updated_at,
		presale_shipped = EXCLUDED.presale_shipped, safety_stock = EXCLUDED.safety_stock,
		sellable = EXCLUDED.sellable`

	// sqlUpsertAlerts writes the latest change of each alert of a batch, and
	// sqlInsertOutbox appends every change, in order, to the outbox: one
	// statement each, as for SKUs and lines.
	sqlUpsertAlerts = `INSERT INTO alerts (` + sqlAlertColumns + `)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
		$7::timestamptz[], $8::timestamptz[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[],
		$13::bigint[], $14::integer[])
		ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, shop = EXCLUDED.shop, sku = EXCLUDED.sku,
		order_id = EXCLUDED.order_id, state = EXCLUDED.state, raised_at = EXCLUDED.raised_at,
		resolved_at = EXCLUDED.resolved_at, message = EXCLUDED.message,
		units_short = EXCLUDED.units_short, exposure_fen = EXCLUDED.exposure_fen, seq = EXCLUDED.seq,
		updated_seq = EXCLUDED.updated_seq, rev = EXCLUDED.rev`

	// sqlInsertOutbox and sqlInsertSync append the outbox entries as the
	// projector encoded them (bytea: Postgres does not parse them), with
	// the columns the publishers route them by (see 006_outbox_bytes).
	sqlInsertOutbox = `INSERT INTO alert_outbox (alert, alert_id, rev, shop, kind, checkpoint)
		SELECT a, i, r, s, k, $6 FROM unnest($1::bytea[], $2::text[], $3::integer[], $4::text[], $5::text[])
		WITH ORDINALITY AS t(a, i, r, s, k, n) ORDER BY n`
	sqlInsertSync = `INSERT INTO sync_outbox (instruction, shop, sku, seq, key, clear, checkpoint)
		SELECT i, s, k, q, y, c, $7 FROM unnest($1::bytea[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::boolean[])
		WITH ORDINALITY AS t(i, s, k, q, y, c, n) ORDER BY n`
	sqlUpsertShops = `INSERT INTO shops (shop, state, last_seq)
		SELECT * FROM unnest($1::text[], $2::bytea[], $3::bigint[])
		ON CONFLICT (shop) DO UPDATE SET state = EXCLUDED.state, last_seq = EXCLUDED.last_seq`
	// syncLockKey orders sync outbox writes, as outboxLockKey alerts'.
	syncLockKey = int64(0x4c454447535943) // "LEDGSYC"
	// outboxLockKey is the advisory lock that orders outbox writes.
	outboxLockKey = int64(0x4c4544474f425800) // "LEDGOBX\0"
)

// Stage implements Writer. It encodes the batch column by column; the
// write is one transaction and one pipelined round trip (pgx.Batch) besides
// BEGIN and COMMIT, of at most seven statements whatever the batch's size,
// and a COPY of the lines new to the store. The checkpoint row is written
// first, so two projectors committing on the same checkpoint queue behind
// its row lock and the second finds it moved.
//
// Unlike MemoryStore the outbox has no size bound: it lives on disk, and
// PendingAlerts reads it in pages.
func (p *PostgresStore) Stage(b *Batch) (CommitFunc, error) {
	w := &pgWrite{projector: b.Projector, prev: b.PrevSeq, last: b.LastSeq, states: make([]byte, 0, 512*len(b.SKUs)), books: make([]byte, 0, 4096)}
	for i, s := range b.SKUs {
		var v View
		if b.Views != nil {
			v = b.Views[i]
		} else {
			v = s.View()
		}
		w.addSKU(s, &v)
	}
	if err := w.addAlerts(b.Alerts); err != nil {
		return nil, fmt.Errorf("commit batch to seq %d: %w", b.LastSeq, err)
	}
	if err := w.addShopsAndSync(b.Shops, b.Sync); err != nil {
		return nil, fmt.Errorf("commit batch to seq %d: %w", b.LastSeq, err)
	}
	return func(ctx context.Context) error { return p.runBatch(ctx, w) }, nil
}

// pgWrite is a staged batch: its rows column by column.
type pgWrite struct {
	projector  string
	prev, last uint64
	sk         skuColumns
	states     []byte      // the SKUs' encoded states, end to end (sk.state slices it)
	books      []byte      // the dirty lines' books, end to end; never nil (book is NOT NULL)
	lines      lineColumns // lines the store may hold: upserted
	newLines   [][]any     // lines new to the store: copied in
	keys       keyColumns
	al         alertColumns
	outbox     outboxColumns // every alert change, in order
	shops      []string      // shop names, and their states as JSON
	shopStates [][]byte
	shopSeqs   []uint64
	sync       syncColumns // every sync instruction, in order
}

func (w *pgWrite) addSKU(s *SKU, v *View) {
	start := len(w.states)
	w.states = EncodeState(w.states, s)
	w.sk.add(s, v, w.states[start:len(w.states):len(w.states)])
	for _, l := range s.DirtyLines() {
		start := len(w.books)
		w.books = l.encodeBook(w.books)
		book := w.books[start:len(w.books):len(w.books)]
		if s.Fresh(l.OrderID) {
			w.newLines = append(w.newLines, lineRow(s.Shop, s.SKU, l, book))
		} else {
			w.lines.add(s.Shop, s.SKU, l, book)
		}
	}
	for _, k := range s.FreshKeys() {
		w.keys.add(s.Shop, s.SKU, k)
	}
}

// addAlerts keeps each alert's latest change for the alerts table, and every
// change for the outbox.
func (w *pgWrite) addAlerts(alerts []Alert) error {
	last := make(map[string]int, len(alerts))
	for i, a := range alerts {
		last[a.ID] = i
	}
	for i := range alerts {
		a := &alerts[i]
		if last[a.ID] == i {
			w.al.add(a)
		}
		ob, err := NewOutboxAlert(a, w.last)
		if err != nil {
			return err
		}
		w.outbox.add(&ob)
	}
	return nil
}

// addShopsAndSync encodes the shops' states and the sync instructions.
func (w *pgWrite) addShopsAndSync(shops []*Shop, sync []SyncInstruction) error {
	for _, sh := range shops {
		state, err := json.Marshal(sh)
		if err != nil {
			return fmt.Errorf("encode shop %s: %w", sh.Shop, err)
		}
		w.shops, w.shopStates, w.shopSeqs = append(w.shops, sh.Shop), append(w.shopStates, state), append(w.shopSeqs, sh.LastSeq)
	}
	for i := range sync {
		ob, err := NewOutboxSync(&sync[i], w.last)
		if err != nil {
			return err
		}
		w.sync.add(&ob)
	}
	return nil
}

// statements queues the write's statements, the checkpoint's first.
func (w *pgWrite) statements() *pgx.Batch {
	batch := &pgx.Batch{}
	if w.prev == 0 {
		batch.Queue(sqlCheckpointStart, w.projector, w.last)
	} else {
		batch.Queue(sqlCheckpointMove, w.projector, w.last, w.prev)
	}
	if len(w.sk.shop) > 0 {
		batch.Queue(sqlUpsertSKUs, w.sk.args()...)
	}
	if len(w.lines.id) > 0 {
		batch.Queue(sqlUpsertLines, w.lines.args()...)
	}
	if len(w.keys.key) > 0 {
		batch.Queue(sqlInsertKeys, w.keys.args()...)
	}
	if len(w.outbox.data) > 0 {
		batch.Queue(sqlUpsertAlerts, w.al.args()...)
		// Outbox ids must become visible in id order: the publisher
		// deletes "every id up to the last one it read", so a lower id
		// committed after a higher one would be deleted unpublished.
		// Projectors of different partitions commit concurrently; this
		// lock, held to the end of the transaction, orders their outbox
		// writes.
		batch.Queue(`SELECT pg_advisory_xact_lock($1)`, outboxLockKey)
		batch.Queue(sqlInsertOutbox, w.outbox.data, w.outbox.alertID, w.outbox.rev, w.outbox.shop, w.outbox.kind, w.last)
	}
	if len(w.shops) > 0 {
		batch.Queue(sqlUpsertShops, w.shops, w.shopStates, w.shopSeqs)
	}
	if len(w.sync.data) > 0 {
		batch.Queue(`SELECT pg_advisory_xact_lock($1)`, syncLockKey)
		batch.Queue(sqlInsertSync, w.sync.data, w.sync.shop, w.sync.sku, w.sync.seq, w.sync.key, w.sync.clear, w.last)
	}
	return batch
}

// pgUniqueViolation is the SQLSTATE of a duplicate key.
const pgUniqueViolation = "23505"

// runBatch runs a staged write in one transaction; its first statement
// moves the checkpoint and must change one row. Lines no store was given
// before are copied in (COPY): about half the cost of an upsert per row.
// One already there means the store holds writes this projector did not
// make: the transaction fails with ErrCheckpointMoved.
func (p *PostgresStore) runBatch(ctx context.Context, w *pgWrite) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("commit batch to seq %d: begin: %w", w.last, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit; on failure the transaction is void anyway
	br := tx.SendBatch(ctx, w.statements())
	tag, err := br.Exec()
	if err != nil {
		_ = br.Close()
		return fmt.Errorf("commit batch to seq %d: write checkpoint: %w", w.last, err)
	}
	if tag.RowsAffected() != 1 {
		_ = br.Close()
		return fmt.Errorf("commit batch to seq %d: checkpoint of %q is not %d: %w", w.last, w.projector, w.prev, ErrCheckpointMoved)
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("commit batch to seq %d: %w", w.last, err)
	}
	if len(w.newLines) > 0 {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"lines"}, lineColumnNames, pgx.CopyFromRows(w.newLines))
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == pgUniqueViolation {
			return fmt.Errorf("commit batch to seq %d: a new line is already stored (%s): %w", w.last, pgErr.Detail, ErrCheckpointMoved)
		}
		if err != nil {
			return fmt.Errorf("commit batch to seq %d: copy %d new lines: %w", w.last, len(w.newLines), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit batch to seq %d: %w", w.last, err)
	}
	return nil
}

// skuColumns holds the changed SKUs of a batch column by column, for
// sqlUpsertSKUs.
type skuColumns struct {
	shop, sku, title, status, salesForm                                  []string
	state                                                                [][]byte
	nextDue, updatedAt                                                   []*time.Time
	hours, days                                                          []int
	price, listed, onHand, committed, available, capacity, presale, left []int64
	openOrders, lateOrders, exposure, openAlerts                         []int64
	presaleShipped, safety, sellable                                     []int64
	lastSeq                                                              []uint64
}

func (c *skuColumns) add(s *SKU, v *View, state []byte) {
	c.shop, c.sku, c.state = append(c.shop, s.Shop), append(c.sku, s.SKU), append(c.state, state)
	c.nextDue, c.updatedAt = append(c.nextDue, nullTime(s.NextDue)), append(c.updatedAt, &v.UpdatedAt)
	c.title, c.status, c.salesForm = append(c.title, v.Title), append(c.status, string(v.Status)), append(c.salesForm, string(v.SalesForm))
	c.hours, c.days = append(c.hours, v.ShipWithinHours), append(c.days, v.ShipWithinDays)
	c.price, c.listed, c.onHand = append(c.price, v.PriceFen), append(c.listed, v.Listed), append(c.onHand, v.OnHand)
	c.committed, c.available = append(c.committed, v.Committed), append(c.available, v.Available)
	c.capacity, c.presale, c.left = append(c.capacity, v.Capacity), append(c.presale, v.PresaleCommitted), append(c.left, v.CapacityLeft)
	c.openOrders, c.lateOrders = append(c.openOrders, v.OpenOrders), append(c.lateOrders, v.LateOrders)
	c.exposure, c.openAlerts = append(c.exposure, v.ExposureFen), append(c.openAlerts, v.OpenAlerts)
	c.lastSeq = append(c.lastSeq, v.LastSeq)
	c.presaleShipped, c.safety, c.sellable = append(c.presaleShipped, v.PresaleShipped), append(c.safety, v.SafetyStock), append(c.sellable, v.Sellable)
}

func (c *skuColumns) args() []any {
	return []any{c.shop, c.sku, c.state, c.nextDue, c.title, c.status, c.salesForm, c.hours, c.days,
		c.price, c.listed, c.onHand, c.committed, c.available, c.capacity, c.presale, c.left,
		c.openOrders, c.lateOrders, c.exposure, c.openAlerts, c.lastSeq, c.updatedAt,
		c.presaleShipped, c.safety, c.sellable}
}

// alertColumns holds the alerts of a batch column by column, for
// sqlUpsertAlerts.
type alertColumns struct {
	id, kind, shop, sku, orderID, state, message []string
	raisedAt                                     []time.Time
	resolvedAt                                   []*time.Time
	unitsShort, exposure                         []int64
	seq, updatedSeq                              []uint64
	rev                                          []int
}

func (c *alertColumns) add(a *Alert) {
	c.id, c.kind, c.shop, c.sku = append(c.id, a.ID), append(c.kind, string(a.Kind)), append(c.shop, a.Shop), append(c.sku, a.SKU)
	c.orderID, c.state, c.message = append(c.orderID, a.OrderID), append(c.state, string(a.State)), append(c.message, a.Message)
	c.raisedAt, c.resolvedAt = append(c.raisedAt, a.RaisedAt), append(c.resolvedAt, a.ResolvedAt)
	c.unitsShort, c.exposure = append(c.unitsShort, a.UnitsShort), append(c.exposure, a.ExposureFen)
	c.seq, c.updatedSeq, c.rev = append(c.seq, a.Seq), append(c.updatedSeq, a.UpdatedSeq), append(c.rev, a.Rev)
}

func (c *alertColumns) args() []any {
	return []any{c.id, c.kind, c.shop, c.sku, c.orderID, c.state, c.raisedAt, c.resolvedAt, c.message,
		c.unitsShort, c.exposure, c.seq, c.updatedSeq, c.rev}
}

// outboxColumns are the alert outbox rows of a batch (sqlInsertOutbox).
type outboxColumns struct {
	data                [][]byte
	alertID, shop, kind []string
	rev                 []int
}

func (c *outboxColumns) add(ob *OutboxAlert) {
	c.data, c.alertID, c.rev = append(c.data, ob.Data), append(c.alertID, ob.AlertID), append(c.rev, ob.Rev)
	c.shop, c.kind = append(c.shop, ob.Shop), append(c.kind, string(ob.Kind))
}

// syncColumns are the sync outbox rows of a batch (sqlInsertSync).
type syncColumns struct {
	data           [][]byte
	shop, sku, key []string
	seq            []uint64
	clear          []bool
}

func (c *syncColumns) add(ob *OutboxSync) {
	c.data, c.shop, c.sku = append(c.data, ob.Data), append(c.shop, ob.Shop), append(c.sku, ob.SKU)
	c.seq, c.key, c.clear = append(c.seq, ob.Seq), append(c.key, ob.Key), append(c.clear, ob.Clear)
}

// DueSKUs implements Writer. As with MemoryStore, a limit of 0 returns nothing
// and a negative limit everything due.
func (p *PostgresStore) DueSKUs(ctx context.Context, now time.Time, limit int) ([]SKUKey, error) {
	if limit == 0 {
		return nil, nil
	}
	var lim *int
	if limit > 0 {
		lim = &limit
	}
	rows, err := p.pool.Query(ctx, `SELECT shop, sku FROM skus
		WHERE next_due IS NOT NULL AND next_due <= $1 ORDER BY next_due LIMIT $2`, now, lim)
	if err != nil {
		return nil, fmt.Errorf("read skus due by %s: %w", now.UTC().Format(time.RFC3339Nano), err)
	}
	var out []SKUKey
	for rows.Next() {
		var k SKUKey
		if err := rows.Scan(&k.Shop, &k.SKU); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read skus due by %s: %w", now.UTC().Format(time.RFC3339Nano), err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read skus due by %s: %w", now.UTC().Format(time.RFC3339Nano), err)
	}
	return out, nil
}

const sqlViewColumns = `shop, sku, title, status, sales_form, ship_within_hours, ship_within_days, price_fen,
	listed, on_hand, committed, available, capacity, presale_committed, capacity_left, open_orders,
	late_orders, exposure_fen, open_alerts, last_seq, updated_at, presale_shipped, safety_stock, sellable, state`

// SKU implements Reader.
func (p *PostgresStore) SKU(ctx context.Context, shop, sku string) (View, error) {
	rows, _ := p.pool.Query(ctx, `SELECT `+sqlViewColumns+` FROM skus WHERE shop = $1 AND sku = $2`, shop, sku)
	v, err := pgx.CollectExactlyOneRow(rows, scanView)
	if errors.Is(err, pgx.ErrNoRows) {
		return View{}, fmt.Errorf("sku %s/%s: %w", shop, sku, ErrNotFound)
	}
	if err != nil {
		return View{}, fmt.Errorf("read sku %s/%s: %w", shop, sku, err)
	}
	return v, nil
}

// SKUs implements Reader.
func (p *PostgresStore) SKUs(ctx context.Context, shop string) ([]View, error) {
	rows, _ := p.pool.Query(ctx, `SELECT `+sqlViewColumns+` FROM skus WHERE shop = $1 ORDER BY sku LIMIT $2`, shop, MaxReadRows)
	vs, err := pgx.CollectRows(rows, scanView)
	if err != nil {
		return nil, fmt.Errorf("read skus of shop %s: %w", shop, err)
	}
	if vs == nil {
		vs = []View{}
	}
	return vs, nil
}

// Alerts implements Reader.
func (p *PostgresStore) Alerts(ctx context.Context, f AlertFilter) ([]Alert, error) {
	limit := f.Limit
	if limit <= 0 || limit > MaxReadRows {
		limit = MaxReadRows
	}
	const order = ` ORDER BY exposure_fen DESC, raised_at, id LIMIT `
	var rows pgx.Rows
	if f.State == "" {
		rows, _ = p.pool.Query(ctx, `SELECT `+sqlAlertColumns+` FROM alerts WHERE shop = $1`+order+`$2`, f.Shop, limit)
	} else {
		rows, _ = p.pool.Query(ctx, `SELECT `+sqlAlertColumns+` FROM alerts WHERE shop = $1 AND state = $2`+order+`$3`, f.Shop, string(f.State), limit)
	}
	as, err := pgx.CollectRows(rows, scanAlert)
	if err != nil {
		return nil, fmt.Errorf("read alerts of shop %s (state %q): %w", f.Shop, f.State, err)
	}
	if as == nil {
		as = []Alert{}
	}
	return as, nil
}

// PendingAlerts implements Outbox. A limit of 0 or less returns nothing.
func (p *PostgresStore) PendingAlerts(ctx context.Context, limit int) ([]OutboxAlert, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, _ := p.pool.Query(ctx, `SELECT id, alert_id, rev, shop, kind, alert, checkpoint FROM alert_outbox ORDER BY id LIMIT $1`, limit)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (OutboxAlert, error) {
		var o OutboxAlert
		err := row.Scan(&o.ID, &o.AlertID, &o.Rev, &o.Shop, &o.Kind, &o.Data, &o.Checkpoint)
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("read alert outbox: %w", err)
	}
	return out, nil
}

// DeletePendingAlerts implements Outbox.
func (p *PostgresStore) DeletePendingAlerts(ctx context.Context, upTo int64) error {
	if _, err := p.pool.Exec(ctx, `DELETE FROM alert_outbox WHERE id <= $1`, upTo); err != nil {
		return fmt.Errorf("delete alert outbox up to %d: %w", upTo, err)
	}
	return nil
}

// Ping implements Reader: it checks that a pooled connection answers.
func (p *PostgresStore) Ping(ctx context.Context) error {
	if err := p.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping postgres: %w", err)
	}
	return nil
}

// Close implements Store: it closes the pool, waiting for connections in use
// to be returned. Close is safe to call more than once.
func (p *PostgresStore) Close() { p.pool.Close() }

func scanView(row pgx.CollectableRow) (View, error) {
	var v View
	var state []byte
	err := row.Scan(&v.Shop, &v.SKU, &v.Title, &v.Status, &v.SalesForm, &v.ShipWithinHours, &v.ShipWithinDays,
		&v.PriceFen, &v.Listed, &v.OnHand, &v.Committed, &v.Available, &v.Capacity, &v.PresaleCommitted,
		&v.CapacityLeft, &v.OpenOrders, &v.LateOrders, &v.ExposureFen, &v.OpenAlerts, &v.LastSeq, &v.UpdatedAt,
		&v.PresaleShipped, &v.SafetyStock, &v.Sellable, &state)
	v.UpdatedAt = v.UpdatedAt.UTC()
	if err == nil {
		// The pace is not stored apart: it follows from the fold state.
		var s SKU
		if err = DecodeState(state, &s); err != nil {
			err = fmt.Errorf("decode state of sku %s/%s: %w", v.Shop, v.SKU, err)
		}
		v.ViewPace = s.Pace.view(s.LiveID, v.Status == StatusListed, v.Sellable)
		v.SyncSeq = s.Synced.Seq
	}
	return v, err
}

func scanAlert(row pgx.CollectableRow) (Alert, error) {
	var a Alert
	err := row.Scan(&a.ID, &a.Kind, &a.Shop, &a.SKU, &a.OrderID, &a.State, &a.RaisedAt, &a.ResolvedAt, &a.Message,
		&a.UnitsShort, &a.ExposureFen, &a.Seq, &a.UpdatedSeq, &a.Rev)
	a.RaisedAt = a.RaisedAt.UTC()
	if a.ResolvedAt != nil {
		t := a.ResolvedAt.UTC()
		a.ResolvedAt = &t
	}
	return a, err
}

// nullTime stores the zero time as NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func utcOrZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// IsTransient reports whether err is worth retrying after a wait: the
// database or the connection to it failed, not the request. It classifies
// Postgres errors by SQLSTATE: class 08 (connection exception), 40001
// (serialization failure), 40P01 (deadlock), 57P01 to 57P03 (admin or crash
// shutdown, cannot connect now) and 53300 (too many connections). Network
// errors, an unexpected EOF, a deadline that expired on an unanswering
// connection, and pgconn errors raised before anything was sent are transient
// too. A cancelled context is not: the caller is stopping.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch code := pgErr.Code; {
		case strings.HasPrefix(code, "08"):
			return true
		case code == "40001", code == "40P01", code == "53300",
			code == "57P01", code == "57P02", code == "57P03":
			return true
		}
		return false
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) || pgconn.SafeToRetry(err)
}
