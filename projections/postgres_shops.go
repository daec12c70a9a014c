package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	_ Store = (*PostgresStore)(nil)
	_ Store = (*MemoryStore)(nil)
)

// LoadShop implements Writer.
func (p *PostgresStore) LoadShop(ctx context.Context, shop string) (*Shop, error) {
	var state []byte
	err := p.pool.QueryRow(ctx, `SELECT state FROM shops WHERE shop = $1`, shop).Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load shop %s: %w", shop, err)
	}
	sh := &Shop{}
	if err := json.Unmarshal(state, sh); err != nil {
		return nil, fmt.Errorf("load shop %s: decode: %w", shop, err)
	}
	rows, _ := p.pool.Query(ctx, `SELECT `+sqlAlertColumns+` FROM alerts WHERE shop = $1 AND sku = '' AND state = 'open' AND kind = $2`,
		shop, string(FulfilmentRisk))
	alerts, err := pgx.CollectRows(rows, scanAlert)
	if err != nil {
		return nil, fmt.Errorf("load shop %s: alerts: %w", shop, err)
	}
	if len(alerts) > 0 {
		sh.Alert = &alerts[0]
	}
	return sh, nil
}

// ShopHealth implements Reader. The shop's totals come from its folded
// state, the SKU count from skus, the lines due from lines, in one
// repeatable-read transaction.
func (p *PostgresStore) ShopHealth(ctx context.Context, shop string, now time.Time) (ShopHealth, error) {
	h := ShopHealth{Shop: shop}
	var sh Shop
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var state []byte
		err := tx.QueryRow(ctx, `SELECT state FROM shops WHERE shop = $1`, shop).Scan(&state)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		default:
			if err := json.Unmarshal(state, &sh); err != nil {
				return fmt.Errorf("decode: %w", err)
			}
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM skus WHERE shop = $1`, shop).Scan(&h.SKUs); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM lines WHERE shop = $1 AND state = 'open'
			AND ship_by > $2 AND ship_by <= $3`, shop, now, now.Add(dueWindow)).Scan(&h.DueWithin24h)
	})
	if err != nil {
		return h, fmt.Errorf("read health of shop %s: %w", shop, err)
	}
	if h.SKUs == 0 {
		return h, fmt.Errorf("shop %s: %w", shop, ErrNotFound)
	}
	h.fill(sh)
	return h, nil
}

// PendingSync implements Outbox. A limit of 0 or less returns nothing.
func (p *PostgresStore) PendingSync(ctx context.Context, limit int) ([]OutboxSync, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, _ := p.pool.Query(ctx, `SELECT id, shop, sku, seq, key, clear, instruction, checkpoint FROM sync_outbox ORDER BY id LIMIT $1`, limit)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (OutboxSync, error) {
		var o OutboxSync
		err := row.Scan(&o.ID, &o.Shop, &o.SKU, &o.Seq, &o.Key, &o.Clear, &o.Data, &o.Checkpoint)
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("read sync outbox: %w", err)
	}
	return out, nil
}

// DeletePendingSync implements Outbox.
func (p *PostgresStore) DeletePendingSync(ctx context.Context, upTo int64) error {
	if _, err := p.pool.Exec(ctx, `DELETE FROM sync_outbox WHERE id <= $1`, upTo); err != nil {
		return fmt.Errorf("delete sync outbox up to %d: %w", upTo, err)
	}
	return nil
}
