package main

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// Platform simulator bounds.
const (
	// platformInboxMax bounds the instructions received and not yet taken
	// by the feed's loop; one that arrives to a full inbox is lost, as a
	// platform call that never went out, and counted (Lost).
	platformInboxMax = 1 << 16
	// platformDueMax bounds the instructions taken and not yet due (held
	// by Latency or LateBy); one taken when it is full is lost as above.
	platformDueMax = 1 << 16
	// platformLatencyMax bounds platformConfig.Latency and LateBy.
	platformLatencyMax = time.Minute
)

// platformKind is how a platform's stock API takes a figure.
type platformKind string

const (
	// incrementOnly platforms (Kuaishou) add or subtract: they apply an
	// instruction's delta, and refuse a subtraction past their own figure.
	incrementOnly platformKind = "increment"
	// fullSet platforms (Douyin by default) set the figure: they apply
	// an instruction's sellable.
	fullSet platformKind = "full_set"
)

// platformConfig shapes the simulated platform and its adapter. Rates are
// fractions from 0 to 1; which instructions are refused or late depends
// only on Seed and each instruction's key, so that runs repeat.
type platformConfig struct {
	Kind platformKind
	// Latency is how long after an instruction arrives the platform has
	// applied it; LateRate of instructions take LateBy longer.
	Latency, LateBy time.Duration
	LateRate        float64
	// RefuseRate of instructions the platform refuses (an error whose
	// outcome the adapter learns by reading the figure back).
	RefuseRate float64
	Seed       uint64
}

func (c platformConfig) check() error {
	switch {
	case c.Kind != incrementOnly && c.Kind != fullSet:
		return fmt.Errorf("platform kind %q: must be %s or %s", c.Kind, incrementOnly, fullSet)
	case c.Latency < 0 || c.Latency > platformLatencyMax || c.LateBy < 0 || c.LateBy > platformLatencyMax:
		return fmt.Errorf("platform latency %s, late by %s: each must be 0 to %s", c.Latency, c.LateBy, platformLatencyMax)
	case !(c.LateRate >= 0 && c.LateRate <= 1) || !(c.RefuseRate >= 0 && c.RefuseRate <= 1):
		return fmt.Errorf("platform late rate %g, refuse rate %g: each must be from 0 to 1", c.LateRate, c.RefuseRate)
	}
	return nil
}

// fate reports whether the platform refuses the instruction of key, and
// whether it applies it late: the same for the same seed and key, whatever
// order instructions arrive in.
func (c platformConfig) fate(key string) (refuse, late bool) {
	h := fnv.New64a()
	h.Write([]byte(key))
	r := rand.New(rand.NewPCG(c.Seed, h.Sum64()))
	return r.Float64() < c.RefuseRate, r.Float64() < c.LateRate
}

// platformCounts says what the simulated platform did with the
// instructions it received.
type platformCounts struct {
	Received int `json:"received"`
	// Applied changed the platform figure; Refused were refused (drawn by
	// RefuseRate, or an increment-only subtraction past the figure), and
	// their figure reported unchanged; Insufficient is the second kind.
	Applied      int `json:"applied"`
	Refused      int `json:"refused"`
	Insufficient int `json:"refused_insufficient"`
	// Late were applied LateBy later than Latency.
	Late int `json:"late"`
	// Stale were passed over: not newer than one handled for the SKU, or
	// computed before the SKU's last stock_set (a figure since replaced).
	Stale int `json:"stale"`
	// Lost arrived to a full inbox or due queue; Unknown named no SKU of
	// the feed.
	Lost    int `json:"lost"`
	Unknown int `json:"unknown"`
	// OverP50, OverP99 and OverMax are how far above sellable the
	// platform's figure stood right after each instruction applied (the
	// units sold since the instruction, for a full-set platform): how
	// stale the figure it was told already was.
	OverP50 int64 `json:"over_sellable_p50_units"`
	OverP99 int64 `json:"over_sellable_p99_units"`
	OverMax int64 `json:"over_sellable_max_units"`
}

// platformSim is a platform that honours sync instructions, and its
// adapter: it follows stock.sync.> and, Latency after an instruction
// arrives, changes the figure the feed sells against (simSKU.listed) and
// reports it as the stock_set the platform confirms. Instructions arrive on
// NATS's goroutine into a bounded inbox; everything else runs on the feed's
// loop, which publishes the stock_sets among the sales, in the order the
// platform made them. Not safe for concurrent use, but for receive.
type platformSim struct {
	cfg   platformConfig
	g     *generator
	skus  map[projections.SKUKey]*simSKU
	inbox chan arrival
	// wake is kicked when an instruction arrives (one kick pending at most).
	wake chan struct{}
	sub  *nats.Subscription
	// due holds the instructions received, by due time.
	due []dueInstruction
	// handled is each SKU's last instruction seq handled; lastSet the
	// stream sequence of its last stock_set (the platform's report or the
	// merchant's relist).
	handled, lastSet map[*simSKU]uint64
	// reporting holds the SKUs whose stock_set is made and not yet
	// published: its sequence is not known yet, but is above every
	// instruction received, so all of them are stale.
	reporting map[*simSKU]bool
	mu        sync.Mutex // guards lost
	lost      int
	// arrived counts the instruction messages received, for lockstep runs.
	arrived atomic.Int64
	// over is, for each instruction applied, the platform's figure less
	// sellable right after.
	over   []int64
	counts platformCounts
}

// arrival is an instruction and when it arrived.
type arrival struct {
	in projections.SyncInstruction
	at time.Time
}

// newPlatformSim returns the platform of g's SKUs; it receives nothing
// until follow.
func newPlatformSim(cfg platformConfig, g *generator) (*platformSim, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	p := &platformSim{cfg: cfg, g: g, skus: make(map[projections.SKUKey]*simSKU, len(g.skus)),
		inbox: make(chan arrival, platformInboxMax), wake: make(chan struct{}, 1), handled: map[*simSKU]uint64{}, lastSet: map[*simSKU]uint64{},
		reporting: map[*simSKU]bool{}}
	for _, s := range g.skus {
		p.skus[projections.SKUKey{Shop: s.shop, SKU: s.sku}] = s
	}
	return p, nil
}

// follow subscribes to every shop's instructions on nc. A core
// subscription sees each instruction as the projector publishes it (one
// published again after a crash too: handle passes it over by seq).
func (p *platformSim) follow(nc *nats.Conn) error {
	sub, err := nc.Subscribe(transport.SyncSubjectRoot+".>", p.receive)
	if err != nil {
		return fmt.Errorf("follow sync instructions: %w", err)
	}
	p.sub = sub
	return nil
}

func (p *platformSim) stop() {
	if p.sub != nil {
		_ = p.sub.Unsubscribe()
	}
}

// receive runs on NATS's goroutine: it queues an instruction for the loop.
func (p *platformSim) receive(m *nats.Msg) {
	defer p.arrived.Add(1)
	a := arrival{at: time.Now()}
	if json.Unmarshal(m.Data, &a.in) != nil {
		return
	}
	select {
	case p.inbox <- a:
	default:
		p.mu.Lock()
		p.lost++
		p.mu.Unlock()
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// take moves what arrived into the due queue (its due time Latency after
// arrival, LateBy more when late); seen sees each instruction of the feed's
// SKUs with its arrival time.
func (p *platformSim) take(seen func(*simSKU, uint64, time.Time)) {
	for {
		select {
		case a := <-p.inbox:
			p.counts.Received++
			if len(p.due) >= platformDueMax {
				p.counts.Lost++
				continue
			}
			if s := p.skus[projections.SKUKey{Shop: a.in.Shop, SKU: a.in.SKU}]; s != nil {
				seen(s, a.in.Seq, a.at)
			}
			_, late := p.cfg.fate(a.in.Key)
			at := a.at.Add(p.cfg.Latency)
			if late {
				p.counts.Late++
				at = at.Add(p.cfg.LateBy)
			}
			// After those due at the same time: arrival order holds.
			i, _ := slices.BinarySearchFunc(p.due, at, func(d dueInstruction, at time.Time) int {
				if d.at.After(at) {
					return 1
				}
				return -1
			})
			p.due = slices.Insert(p.due, i, dueInstruction{in: a.in, at: at})
		default:
			return
		}
	}
}

// next returns when the earliest queued instruction is due, and false when
// none is queued.
func (p *platformSim) next() (time.Time, bool) {
	if len(p.due) == 0 {
		return time.Time{}, false
	}
	return p.due[0].at, true
}

// applyDue applies the instructions due by now and appends to out the
// stock_set of each the platform confirms; touched receives their SKUs.
func (p *platformSim) applyDue(out []ledger.Event, now time.Time, touched []*simSKU) ([]ledger.Event, []*simSKU) {
	for len(p.due) > 0 && !p.due[0].at.After(now) && len(out) < ledger.MaxBatch {
		d := p.due[0]
		p.due = p.due[1:]
		if e, s, ok := p.apply(d.in); ok {
			out, touched = append(out, e), append(touched, s)
		}
	}
	return out, touched
}

// apply has the platform take one instruction, and returns the stock_set
// of what it shows after (the same figure when it refused); ok is false
// when the instruction is passed over. One correction per report: an
// instruction computed before the SKU's last stock_set describes a figure
// since replaced, and an increment-only platform applying its delta would
// correct twice.
func (p *platformSim) apply(in projections.SyncInstruction) (e ledger.Event, s *simSKU, ok bool) {
	s = p.skus[projections.SKUKey{Shop: in.Shop, SKU: in.SKU}]
	switch {
	case s == nil:
		p.counts.Unknown++
		return e, nil, false
	case in.Seq <= p.handled[s] || in.Seq < p.lastSet[s] || p.reporting[s]:
		p.counts.Stale++
		return e, nil, false
	}
	p.handled[s] = in.Seq
	refuse, _ := p.cfg.fate(in.Key)
	next := in.Sellable
	if p.cfg.Kind == incrementOnly {
		next = s.listed + in.Delta
		if in.Sellable == 0 {
			// Nothing left to sell: the adapter takes the platform to 0
			// whatever it sold meanwhile (a subtraction of its whole
			// figure), where -delta would be refused as past it.
			next = max(0, next)
		}
	}
	switch {
	case refuse:
		p.counts.Refused++
	case next < 0: // "insufficient sellable stock": it sold more than the instruction saw
		p.counts.Refused++
		p.counts.Insufficient++
	default:
		p.counts.Applied++
		s.listed = next
		p.over = append(p.over, s.listed-s.sellable())
	}
	p.reporting[s] = true
	// Not g.event: the feed's rng draws nothing for the platform.
	e = ledger.Event{ID: projections.SyncEventID(in.Key), Type: ledger.StockSet, Shop: s.shop, SKU: s.sku,
		At: p.g.clock, Stock: ledger.Int64(s.listed)}
	return e, s, true
}

// published records the stream sequence of each stock_set among events
// (acks in the same order): instructions before it are stale.
func (p *platformSim) published(events []ledger.Event, acks []transport.Ack) {
	for i := range events {
		if events[i].Type != ledger.StockSet {
			continue
		}
		if s := p.skus[projections.SKUKey{Shop: events[i].Shop, SKU: events[i].SKU}]; s != nil {
			p.lastSet[s] = max(p.lastSet[s], acks[i].Seq)
			delete(p.reporting, s)
		}
	}
}

// result returns the counts, lost instructions included.
func (p *platformSim) result() platformCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts
	c.Lost += p.lost
	if n := len(p.over); n > 0 {
		slices.Sort(p.over)
		c.OverP50, c.OverP99, c.OverMax = p.over[n/2], p.over[min(n-1, n*99/100)], p.over[n-1]
	}
	return c
}

// dueInstruction is an instruction and when the platform has applied it.
type dueInstruction struct {
	in projections.SyncInstruction
	at time.Time
}
