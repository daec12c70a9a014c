package projections

import (
	"context"
	"fmt"
)

// AlertTotal is the count and money at risk of the open alerts of one kind.
type AlertTotal struct {
	Open        int64
	ExposureFen int64
}

// OpenAlertTotals implements Reader.
func (m *MemoryStore) OpenAlertTotals(context.Context) (map[AlertKind]AlertTotal, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[AlertKind]AlertTotal)
	for _, a := range m.alerts {
		if a.State == AlertOpen {
			t := out[a.Kind]
			t.Open++
			t.ExposureFen += a.ExposureFen
			out[a.Kind] = t
		}
	}
	return out, nil
}

// OpenAlertTotals implements Reader.
func (p *PostgresStore) OpenAlertTotals(ctx context.Context) (map[AlertKind]AlertTotal, error) {
	rows, err := p.pool.Query(ctx, `SELECT kind, count(*), coalesce(sum(exposure_fen), 0)::bigint FROM alerts WHERE state = 'open' GROUP BY kind`)
	if err != nil {
		return nil, fmt.Errorf("sum open alerts: %w", err)
	}
	defer rows.Close()
	out := make(map[AlertKind]AlertTotal)
	for rows.Next() {
		var kind string
		var t AlertTotal
		if err := rows.Scan(&kind, &t.Open, &t.ExposureFen); err != nil {
			return nil, fmt.Errorf("sum open alerts: %w", err)
		}
		out[AlertKind(kind)] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sum open alerts: %w", err)
	}
	return out, nil
}
