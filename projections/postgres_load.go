package projections

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// loadSKUsMax bounds the SKUs of one LoadSKUs query; more are read in
// several, in the same transaction.
const loadSKUsMax = 2_000

const (
	// sqlSKUKeys is the set of SKUs named by two parallel arrays.
	sqlSKUKeys   = `(shop, sku) IN (SELECT * FROM unnest($1::text[], $2::text[]))`
	sqlSKUStates = `SELECT shop, sku, state FROM skus WHERE ` + sqlSKUKeys
	// sqlHeldLinesOf reads the lines the fold keeps in memory (SKU.Lines),
	// early and open ones, of the SKUs named.
	sqlHeldLinesOf  = `SELECT shop, sku, ` + sqlLineColumns + ` FROM lines WHERE state <> 'closed' AND ` + sqlSKUKeys
	sqlOpenAlertsOf = `SELECT ` + sqlAlertColumns + ` FROM alerts WHERE state = 'open' AND ` + sqlSKUKeys
)

// LoadSKU implements Writer.
func (p *PostgresStore) LoadSKU(ctx context.Context, shop, sku string) (*SKU, error) {
	k := SKUKey{Shop: shop, SKU: sku}
	got, err := p.LoadSKUs(ctx, []SKUKey{k})
	if err != nil {
		return nil, err
	}
	return got[k], nil
}

// LoadSKUs implements Writer. It reads the SKUs' states, their held lines
// and their open alerts in one repeatable-read transaction, so that they
// come from one commit: three statements per loadSKUsMax SKUs, one round
// trip each part.
func (p *PostgresStore) LoadSKUs(ctx context.Context, keys []SKUKey) (map[SKUKey]*SKU, error) {
	out := make(map[SKUKey]*SKU, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		for part := range slices.Chunk(keys, loadSKUsMax) {
			if err := loadSKUPart(ctx, tx, part, out); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load %d skus: %w", len(keys), err)
	}
	for _, s := range out {
		s.Restore()
	}
	return out, nil
}

// loadSKUPart reads the SKUs of part into out, in one batch of three
// statements: states first, so that lines and alerts find their SKU.
func loadSKUPart(ctx context.Context, tx pgx.Tx, part []SKUKey, out map[SKUKey]*SKU) error {
	shops, skus := make([]string, len(part)), make([]string, len(part))
	for i, k := range part {
		shops[i], skus[i] = k.Shop, k.SKU
	}
	b := &pgx.Batch{}
	b.Queue(sqlSKUStates, shops, skus).Query(func(rows pgx.Rows) error {
		return scanSKUStates(rows, out)
	})
	b.Queue(sqlHeldLinesOf, shops, skus).Query(func(rows pgx.Rows) error {
		_, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (struct{}, error) {
			var k SKUKey
			l, err := scanLineInto(row, &k.Shop, &k.SKU)
			if err == nil && out[k] != nil {
				out[k].Lines[l.OrderID] = l
			}
			return struct{}{}, err
		})
		return err
	})
	b.Queue(sqlOpenAlertsOf, shops, skus).Query(func(rows pgx.Rows) error {
		_, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (struct{}, error) {
			a, err := scanAlert(row)
			if s := out[SKUKey{Shop: a.Shop, SKU: a.SKU}]; err == nil && s != nil {
				s.Alerts[alertKey(a.Kind, a.OrderID)] = &a
			}
			return struct{}{}, err
		})
		return err
	})
	return tx.SendBatch(ctx, b).Close()
}

// scanSKUStates decodes each row's state into out, with empty line and
// alert maps for the statements after it to fill.
func scanSKUStates(rows pgx.Rows, out map[SKUKey]*SKU) error {
	_, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (struct{}, error) {
		var (
			k     SKUKey
			state []byte
		)
		if err := row.Scan(&k.Shop, &k.SKU, &state); err != nil {
			return struct{}{}, err
		}
		s := &SKU{}
		if err := DecodeState(state, s); err != nil {
			return struct{}{}, fmt.Errorf("decode state of %s/%s: %w", k.Shop, k.SKU, err)
		}
		s.Lines, s.Alerts = make(map[string]*Line), make(map[string]*Alert)
		out[k] = s
		return struct{}{}, nil
	})
	return err
}
