package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"stockledger/ledger"
)

// lineBook is the JSON form of a line's book (the part of a line stores
// keep as one value: its promise slot, the documents applied and the events
// early of its sale), as versions before the compact form wrote it.
type lineBook struct {
	Promise Slot         `json:"promise"`
	Docs    []string     `json:"docs,omitempty"`
	Early   []EarlyEvent `json:"early,omitempty"`
}

// bookV1 opens a book in the compact form (stateWriter's encodings); a book
// of the first form, JSON, opens with '{'. decodeBook reads both.
const bookV1 = 0x01

// encodeBook appends a line's book to dst, or nothing for the usual line:
// no document, no early event, and its sale's own promise, which the line's
// sold_at restores (decodeBook). Most lines are written with an empty book.
func (l *Line) encodeBook(dst []byte) []byte {
	if len(l.Docs) == 0 && len(l.Early) == 0 && len(l.Promise.IDs) == 0 && l.Promise.At.Equal(l.SoldAt) {
		return dst
	}
	w := stateWriter{b: append(dst, bookV1)}
	w.slot(l.Promise)
	w.uint(uint64(len(l.Docs)))
	for _, d := range l.Docs {
		w.str(d)
	}
	w.uint(uint64(len(l.Early)))
	for i := range l.Early {
		e := &l.Early[i]
		w.str(string(e.Type))
		w.str(e.ID)
		w.uint(e.Seq)
		w.time(e.At)
		w.int(e.Qty)
		w.str(e.Doc)
		w.int(e.Restocked)
		w.time(e.ShipBy)
	}
	return w.b
}

// decodeBook sets a line's book from what encodeBook wrote, or from the
// JSON of earlier versions.
func (l *Line) decodeBook(book []byte) error {
	switch {
	case len(book) == 0:
		l.Promise = Slot{At: l.SoldAt}
		return nil
	case book[0] == '{':
		var b lineBook
		if err := json.Unmarshal(book, &b); err != nil {
			return fmt.Errorf("decode line %s: %w", l.OrderID, err)
		}
		l.Promise, l.Docs, l.Early = b.Promise, b.Docs, b.Early
		return nil
	case book[0] != bookV1:
		return fmt.Errorf("decode line %s: unknown book encoding", l.OrderID)
	}
	r := stateReader{b: book[1:]}
	l.Promise = r.slot()
	l.Docs = nil
	if n := r.count(); n > 0 {
		l.Docs = make([]string, n)
		for i := range l.Docs {
			l.Docs[i] = r.str()
		}
	}
	l.Early = nil
	if n := r.count(); n > 0 {
		l.Early = make([]EarlyEvent, n)
		for i := range l.Early {
			l.Early[i] = EarlyEvent{Type: ledger.Type(r.str()), ID: r.str(), Seq: r.uint(), At: r.time(),
				Qty: r.int(), Doc: r.str(), Restocked: r.int(), ShipBy: r.time()}
		}
	}
	if err := r.end(); err != nil {
		return fmt.Errorf("decode line %s: book: %w", l.OrderID, err)
	}
	return nil
}

// lineColumnNames are the columns of a row of the lines table, in order.
var lineColumnNames = []string{"shop", "sku", "order_id", "parent_order_id", "qty", "unit_price_fen", "sales_form",
	"sold_at", "ship_by", "seq", "shipped", "cancelled", "returned", "late", "closed_at", "state", "book"}

const (
	sqlLineColumns = `order_id, parent_order_id, qty, unit_price_fen, sales_form, sold_at, ship_by, seq,
		shipped, cancelled, returned, late, closed_at, book`
	sqlLineColumnsOf = `l.order_id, l.parent_order_id, l.qty, l.unit_price_fen, l.sales_form, l.sold_at, l.ship_by, l.seq,
		l.shipped, l.cancelled, l.returned, l.late, l.closed_at, l.book`
	// sqlKnownLines reads the lines named by three parallel arrays.
	sqlKnownLines = `SELECT l.shop, l.sku, ` + sqlLineColumnsOf + ` FROM lines l
		JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(shop, sku, order_id)
		ON l.shop = k.shop AND l.sku = k.sku AND l.order_id = k.order_id`
	sqlUpsertLines = `INSERT INTO lines (shop, sku, order_id, parent_order_id, qty, unit_price_fen, sales_form,
		sold_at, ship_by, seq, shipped, cancelled, returned, late, closed_at, state, book)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
		$7::text[], $8::timestamptz[], $9::timestamptz[], $10::bigint[], $11::bigint[], $12::bigint[],
		$13::bigint[], $14::boolean[], $15::timestamptz[], $16::text[], $17::bytea[])
		ON CONFLICT (shop, sku, order_id) DO UPDATE SET parent_order_id = EXCLUDED.parent_order_id,
		qty = EXCLUDED.qty, unit_price_fen = EXCLUDED.unit_price_fen, sales_form = EXCLUDED.sales_form,
		sold_at = EXCLUDED.sold_at, ship_by = EXCLUDED.ship_by, seq = EXCLUDED.seq,
		shipped = EXCLUDED.shipped, cancelled = EXCLUDED.cancelled, returned = EXCLUDED.returned,
		late = EXCLUDED.late, closed_at = EXCLUDED.closed_at, state = EXCLUDED.state, book = EXCLUDED.book`
	// sqlInsertKeys records natural keys applied; sqlKnownKeys reads which of
	// those named by three parallel arrays are.
	sqlInsertKeys = `INSERT INTO applied_keys (shop, sku, key)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING`
	sqlKnownKeys = `SELECT a.shop, a.sku, a.key FROM applied_keys a
		JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(shop, sku, key)
		ON a.shop = k.shop AND a.sku = k.sku AND a.key = k.key`
)

// knownRowsMax bounds the keys of one KnownLines or KnownKeys query; more
// are read in several.
const knownRowsMax = 10_000

// KnownLines implements Writer.
func (p *PostgresStore) KnownLines(ctx context.Context, keys []LineKey) (map[LineKey]Line, error) {
	out := make(map[LineKey]Line)
	for part := range slices.Chunk(keys, knownRowsMax) {
		shops, skus, ids := make([]string, len(part)), make([]string, len(part)), make([]string, len(part))
		for i, k := range part {
			shops[i], skus[i], ids[i] = k.Shop, k.SKU, k.OrderID
		}
		rows, _ := p.pool.Query(ctx, sqlKnownLines, shops, skus, ids)
		_, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (struct{}, error) {
			var k LineKey
			l, err := scanLineInto(row, &k.Shop, &k.SKU)
			k.OrderID = l.OrderID
			out[k] = *l
			return struct{}{}, err
		})
		if err != nil {
			return nil, fmt.Errorf("read %d lines: %w", len(part), err)
		}
	}
	return out, nil
}

// LineKeys implements LineLister: one pass over the lines' primary key,
// each row's values handed over as read, without a copy.
func (p *PostgresStore) LineKeys(ctx context.Context, add func(shop, sku, orderID []byte)) (int, error) {
	rows, err := p.pool.Query(ctx, `SELECT shop, sku, order_id FROM lines`)
	if err != nil {
		return 0, fmt.Errorf("list lines: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		v := rows.RawValues()
		add(v[0], v[1], v[2])
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("list lines (%d read): %w", n, err)
	}
	return n, nil
}

// KnownKeys implements Writer.
func (p *PostgresStore) KnownKeys(ctx context.Context, keys []KeyRef) (map[KeyRef]bool, error) {
	out := make(map[KeyRef]bool)
	for part := range slices.Chunk(keys, knownRowsMax) {
		var c keyColumns
		for _, k := range part {
			c.add(k.Shop, k.SKU, k.Key)
		}
		rows, _ := p.pool.Query(ctx, sqlKnownKeys, c.args()...)
		_, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (struct{}, error) {
			var k KeyRef
			err := row.Scan(&k.Shop, &k.SKU, &k.Key)
			out[k] = true
			return struct{}{}, err
		})
		if err != nil {
			return nil, fmt.Errorf("read %d keys: %w", len(part), err)
		}
	}
	return out, nil
}

// scanLine reads a row of sqlLineColumns.
func scanLine(row pgx.CollectableRow) (*Line, error) { return scanLineInto(row) }

// scanLineInto reads a row of sqlLineColumns after the columns given.
func scanLineInto(row pgx.CollectableRow, first ...any) (*Line, error) {
	var (
		l                        Line
		soldAt, shipBy, closedAt *time.Time
		book                     []byte
	)
	dest := append(first, &l.OrderID, &l.ParentOrderID, &l.Qty, &l.UnitPriceFen, &l.SalesForm, &soldAt, &shipBy,
		&l.Seq, &l.Shipped, &l.Cancelled, &l.Returned, &l.Late, &closedAt, &book)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	l.SoldAt, l.ShipBy, l.ClosedAt = utcOrZero(soldAt), utcOrZero(shipBy), utcOrZero(closedAt)
	if err := l.decodeBook(book); err != nil {
		return nil, err
	}
	return &l, nil
}

// lineRow is a row of the lines table for COPY, in lineColumnNames order.
func lineRow(shop, sku string, l *Line, book []byte) []any {
	return []any{shop, sku, l.OrderID, l.ParentOrderID, l.Qty, l.UnitPriceFen, string(l.SalesForm),
		nullTime(l.SoldAt), nullTime(l.ShipBy), l.Seq, l.Shipped, l.Cancelled, l.Returned, l.Late,
		nullTime(l.ClosedAt), string(l.State()), book}
}

// lineColumns holds the dirty lines of a batch column by column, for
// sqlUpsertLines.
type lineColumns struct {
	shop, sku, id, parent, form, state []string
	qty, price                         []int64
	soldAt, shipBy, closedAt           []*time.Time
	seq                                []uint64
	shipped, cancelled, returned       []int64
	late                               []bool
	book                               [][]byte
}

func (c *lineColumns) add(shop, sku string, l *Line, book []byte) {
	c.shop, c.sku, c.id, c.parent = append(c.shop, shop), append(c.sku, sku), append(c.id, l.OrderID), append(c.parent, l.ParentOrderID)
	c.qty, c.price, c.form = append(c.qty, l.Qty), append(c.price, l.UnitPriceFen), append(c.form, string(l.SalesForm))
	c.soldAt, c.shipBy, c.closedAt = append(c.soldAt, nullTime(l.SoldAt)), append(c.shipBy, nullTime(l.ShipBy)), append(c.closedAt, nullTime(l.ClosedAt))
	c.seq, c.shipped, c.cancelled, c.returned = append(c.seq, l.Seq), append(c.shipped, l.Shipped), append(c.cancelled, l.Cancelled), append(c.returned, l.Returned)
	c.late, c.state, c.book = append(c.late, l.Late), append(c.state, string(l.State())), append(c.book, book)
}

func (c *lineColumns) args() []any {
	return []any{c.shop, c.sku, c.id, c.parent, c.qty, c.price, c.form, c.soldAt, c.shipBy, c.seq,
		c.shipped, c.cancelled, c.returned, c.late, c.closedAt, c.state, c.book}
}

// keyColumns holds natural keys column by column.
type keyColumns struct{ shop, sku, key []string }

func (c *keyColumns) add(shop, sku, key string) {
	c.shop, c.sku, c.key = append(c.shop, shop), append(c.sku, sku), append(c.key, key)
}

func (c *keyColumns) args() []any { return []any{c.shop, c.sku, c.key} }
