package projections

import (
	"fmt"
	"time"
)

// Shop health bounds.
const (
	// DefaultFulfilmentRiskPct is the fulfilment_risk threshold when none
	// is configured: 5% of open lines late or unserved.
	DefaultFulfilmentRiskPct = 5
	// FulfilmentRiskLinesMin is the fewest open lines a shop has before
	// fulfilment_risk is judged: a shop with 3 open lines, 1 late, is not
	// at risk of the platform's punishment.
	FulfilmentRiskLinesMin = 20
)

// FulfilmentRisk: a shop whose late or unserved open lines reach the
// configured share of its open lines; the platform's promotion rules punish
// it. It is a shop's alert: its sku is empty.
const FulfilmentRisk AlertKind = "fulfilment_risk"

// Contribution is what one SKU adds to its shop's health: its open lines,
// the late ones (past their ship-by), the unserved ones (stock or capacity
// cannot serve them), those at risk (late or unserved, each once) and its
// money at risk.
type Contribution struct {
	Open, Late, Unserved, AtRisk int64
	ExposureFen                  int64
}

// Contribution returns the SKU's contribution to its shop's health, as of
// the last Apply or Advance.
func (s *SKU) Contribution() Contribution {
	sv := s.served
	unserved := sv.spot.unservedLines + sv.presale.unservedLines
	return Contribution{
		Open: int64(len(s.spot.lines) + len(s.presale.lines)), Late: int64(s.spot.late + s.presale.late),
		Unserved: unserved, AtRisk: unserved + sv.spot.lateServed + sv.presale.lateServed, ExposureFen: s.exposureFen(),
	}
}

func (c Contribution) minus(d Contribution) Contribution {
	return Contribution{c.Open - d.Open, c.Late - d.Late, c.Unserved - d.Unserved, c.AtRisk - d.AtRisk, c.ExposureFen - d.ExposureFen}
}

func (c Contribution) plus(d Contribution) Contribution {
	return Contribution{c.Open + d.Open, c.Late + d.Late, c.Unserved + d.Unserved, c.AtRisk + d.AtRisk, c.ExposureFen + d.ExposureFen}
}

// Shop is the folded health of one shop: the sum of its SKUs'
// contributions, and its fulfilment_risk alert. The projector moves it by
// each SKU's change (Add), event by event, so a rebuild gives the same
// alerts. A Shop is not safe for concurrent use.
type Shop struct {
	Shop   string       `json:"shop"`
	Totals Contribution `json:"totals"`
	// LastSeq is the stream sequence of the last change.
	LastSeq uint64 `json:"last_seq"`
	// Config is the fold's configuration (the threshold); not stored.
	Config FoldConfig `json:"-"`
	// Alert is the open fulfilment_risk, nil when none is open.
	Alert *Alert `json:"-"`
}

// NewShop returns the health of a shop never seen.
func NewShop(shop string) *Shop { return &Shop{Shop: shop} }

// AtRiskPct is the share of open lines late or unserved, in percent to one
// decimal; 0 without open lines.
func (c Contribution) AtRiskPct() float64 {
	if c.Open <= 0 {
		return 0
	}
	return float64(c.AtRisk*1000/c.Open) / 10
}

// Add moves the shop by one SKU's change (its contribution before and after
// the event at seq, time at) and returns the alert changes: fulfilment_risk
// raised, updated or resolved. A change that moves nothing changes nothing.
func (sh *Shop) Add(seq uint64, at time.Time, before, after Contribution) []Alert {
	d := after.minus(before)
	if d == (Contribution{}) {
		return nil
	}
	sh.Totals = sh.Totals.plus(d)
	sh.LastSeq = max(sh.LastSeq, seq)
	return sh.evaluate(seq, at)
}

// atRisk reports whether the totals reach the threshold.
func (sh *Shop) atRisk() bool {
	pct := sh.Config.FulfilmentRiskPct
	t := sh.Totals
	return pct > 0 && t.Open >= FulfilmentRiskLinesMin && t.AtRisk*100 >= int64(pct)*t.Open
}

func (sh *Shop) evaluate(seq uint64, at time.Time) []Alert {
	if !sh.atRisk() {
		if sh.Alert == nil {
			return nil
		}
		a := *sh.Alert
		sh.Alert = nil
		a.State = AlertResolved
		t := at.UTC()
		a.ResolvedAt = &t
		a.UpdatedSeq, a.Rev = seq, a.Rev+1
		return []Alert{a}
	}
	// The alert moves with the whole percent only: every sale moves the
	// counts, and an update per sale would bury the alert stream. GET
	// /v1/shops/{shop} has the exact totals at every moment.
	t := sh.Totals
	pct := t.AtRisk * 100 / t.Open
	msg := fmt.Sprintf("%d%% of the shop's open lines are late or cannot be served (at least %d%% with %d open lines or more): the platform punishes shops with many unfulfilled orders",
		pct, sh.Config.FulfilmentRiskPct, FulfilmentRiskLinesMin)
	if a := sh.Alert; a != nil {
		if a.Message == msg {
			return nil
		}
		a.UnitsShort, a.Message = t.AtRisk, msg
		a.UpdatedSeq, a.Rev = max(seq, a.UpdatedSeq), a.Rev+1
		return []Alert{*a}
	}
	key := string(FulfilmentRisk)
	sh.Alert = &Alert{ID: alertID(sh.Shop, "", key, seq), Kind: FulfilmentRisk, Shop: sh.Shop, State: AlertOpen,
		RaisedAt: at.UTC(), Message: msg, UnitsShort: t.AtRisk, Seq: seq, UpdatedSeq: seq, Rev: 1}
	return []Alert{*sh.Alert}
}

// fill sets the totals kept by the shop's fold.
func (h *ShopHealth) fill(sh Shop) {
	t := sh.Totals
	h.OpenLines, h.LateLines, h.Unserved, h.AtRiskLines = t.Open, t.Late, t.Unserved, t.AtRisk
	h.ExposureFen, h.AtRiskPct, h.LastSeq = t.ExposureFen, t.AtRiskPct(), sh.LastSeq
}
