package projections

import (
	"fmt"
	"time"
)

// Pace bounds. The pace of a SKU is taken from event times only, so that a
// rebuild from the stream gives the same figures.
const (
	// PaceWindowMinutes is the window of the sales rate: the units sold in
	// the last PaceWindowMinutes minutes of event time.
	PaceWindowMinutes = 5
	// PaceHistoryMinutes is how many one-minute buckets a SKU keeps (for the
	// dashboard's chart of the live session); older minutes drop out.
	PaceHistoryMinutes = 30
	// DefaultSelloutSoon is the sellout_soon threshold ledgerd uses when none
	// is configured.
	DefaultSelloutSoon = 15 * time.Minute
)

// SelloutSoon raises a warning when, at the current pace, sellable runs
// out within the fold's configured threshold.
const SelloutSoon AlertKind = "sellout_soon"

// FoldConfig is configuration of the fold, the same for every SKU and kept out
// of the stored state: a rebuild with the same configuration gives the same
// alerts. The zero value disables sellout_soon.
type FoldConfig struct {
	// SelloutSoon is the sellout_soon threshold: a listed SKU whose real
	// limit runs out within it at the current pace gets the alert. Zero or
	// less disables the alert.
	SelloutSoon time.Duration
	// FulfilmentRiskPct is the fulfilment_risk threshold, percent of a
	// shop's open lines late or unserved; 0 disables the alert.
	FulfilmentRiskPct int
}

// DefaultFoldConfig is the fold's configuration ledgerd runs with when none
// is set: sellout_soon at 15 minutes, fulfilment_risk at 5%.
func DefaultFoldConfig() FoldConfig {
	return FoldConfig{SelloutSoon: DefaultSelloutSoon, FulfilmentRiskPct: DefaultFulfilmentRiskPct}
}

// MinuteSales is the units sold in one minute of event time.
type MinuteSales struct {
	// Minute is the start of the minute, UTC.
	Minute time.Time `json:"minute"`
	Units  int64     `json:"units"`
}

// paceBucket counts the units sold in one minute (Unix minutes).
type paceBucket struct {
	Minute int64 `json:"m"`
	Units  int64 `json:"u"`
}

// Pace is a SKU's recent sales by minute of event time: a ring of
// PaceHistoryMinutes buckets indexed by the minute. Its zero value is empty.
type Pace struct {
	Buckets [PaceHistoryMinutes]paceBucket `json:"buckets"`
	// Latest is the latest event time the SKU has seen: the pace's "now".
	// It is not moved by the ship-promise sweep's wall clock, so that the
	// pace, the sellout estimate and sellout_soon depend on the events
	// alone and a rebuild from the stream gives the same figures.
	Latest time.Time `json:"latest"`
}

// observe moves the pace's clock to the event time t, never back.
func (p *Pace) observe(t time.Time) {
	if t.After(p.Latest) {
		p.Latest = t.UTC()
	}
}

func unixMinute(t time.Time) int64 { return t.Unix() / 60 }

// add counts qty units sold at t. A sale older than the ring is dropped: it
// cannot change the pace of the last minutes.
func (p *Pace) add(t time.Time, qty int64) {
	m := unixMinute(t)
	b := &p.Buckets[m%PaceHistoryMinutes]
	switch {
	case b.Minute == m:
		b.Units += qty
	case b.Minute < m:
		b.Minute, b.Units = m, qty
	}
}

// units returns the units sold in the minutes (now-n, now].
func (p *Pace) units(now time.Time, n int64) int64 {
	m := unixMinute(now)
	var sum int64
	for _, b := range p.Buckets {
		if b.Units > 0 && b.Minute <= m && b.Minute > m-n {
			sum += b.Units
		}
	}
	return sum
}

// ViewPace is the pace part of a SKU's view.
type ViewPace struct {
	// PacePerHour is the units sold per hour at the rate of the last
	// PaceWindowMinutes minutes of event time (up to the latest event).
	PacePerHour int64 `json:"pace_per_hour"`
	// SelloutETA is when sellable (available for spot, capacity_left
	// for presale) runs out at that pace: null when the SKU is not listed,
	// does not sell, or has nothing left.
	SelloutETA *time.Time `json:"sellout_eta"`
	// LiveID is the live session of the SKU's latest sale.
	LiveID string `json:"live_id,omitempty"`
	// SalesByMinute are the units sold in each of the last
	// PaceHistoryMinutes minutes up to the latest event, oldest first, minutes
	// without sales left out.
	SalesByMinute []MinuteSales `json:"sales_by_minute"`
}

// paceView derives the pace part of the SKU's view from the event times.
func (s *SKU) paceView() ViewPace {
	return s.Pace.view(s.LiveID, s.Status == StatusListed, s.Sellable())
}

// view derives the pace part of a view: listed and sellable are the SKU's
// (a store that keeps the view's figures passes them back).
func (p *Pace) view(liveID string, listed bool, sellable int64) ViewPace {
	v := ViewPace{LiveID: liveID, SalesByMinute: []MinuteSales{}}
	units := p.units(p.Latest, PaceWindowMinutes)
	v.PacePerHour = units * 60 / PaceWindowMinutes
	if eta, ok := p.selloutETA(units, listed, sellable); ok {
		v.SelloutETA = &eta
	}
	now := unixMinute(p.Latest)
	for m := now - PaceHistoryMinutes + 1; m <= now; m++ {
		if b := p.Buckets[((m%PaceHistoryMinutes)+PaceHistoryMinutes)%PaceHistoryMinutes]; b.Minute == m && b.Units > 0 {
			v.SalesByMinute = append(v.SalesByMinute, MinuteSales{Minute: time.Unix(m*60, 0).UTC(), Units: b.Units})
		}
	}
	return v
}

// selloutETA is when sellable (the real limit less the safety stock) runs
// out at the pace of units sold in the window; ok is false when the SKU is
// not listed, sold nothing in the window or has nothing left. Whole seconds.
func (p *Pace) selloutETA(units int64, listed bool, sellable int64) (time.Time, bool) {
	if !listed || units <= 0 || sellable <= 0 {
		return time.Time{}, false
	}
	// sellable / (units per window) windows; in seconds. Both are at most a
	// few billion, so the product stays well inside int64.
	secs := sellable * PaceWindowMinutes * 60 / units
	return p.Latest.Add(time.Duration(secs) * time.Second).UTC().Truncate(time.Second), true
}

// evaluatePace raises sellout_soon when sellable runs out within the
// configured threshold at the current pace, and resolves it otherwise.
func (s *SKU) evaluatePace(seq uint64, at time.Time, changes []Alert) []Alert {
	key := alertKey(SelloutSoon, "")
	if s.Config.SelloutSoon <= 0 {
		return s.resolve(changes, key, seq, at)
	}
	units := s.Pace.units(s.Pace.Latest, PaceWindowMinutes)
	eta, ok := s.Pace.selloutETA(units, s.Status == StatusListed, s.Sellable())
	if !ok || eta.Sub(s.Pace.Latest) >= s.Config.SelloutSoon {
		return s.resolve(changes, key, seq, at)
	}
	// The message names whole minutes only, so that the alert is updated
	// when the estimate moves by a minute, not at every sale.
	mins := int64(eta.Sub(s.Pace.Latest) / time.Minute)
	return s.raise(changes, Alert{Kind: SelloutSoon, Seq: seq, RaisedAt: at,
		Message: s.text(textSelloutSoon, alertArgs{mins, s.presaleFlag(), s.SafetyStock, 0, 0, 0, ""}, selloutSoonText)})
}

func selloutSoonText(a alertArgs) string {
	return fmt.Sprintf("at the pace of the last %d minutes the %s runs out in about %d minutes: restock, confirm capacity or set stock to zero",
		PaceWindowMinutes, limitName(a.b == 1, a.c), a.a)
}
