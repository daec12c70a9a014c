package main

import (
	"slices"
	"sort"
	"sync"
	"time"

	"stockledger/consumers"

	"stockledger/ledger"
	"stockledger/ledger/transport"
)

// stopClock times stop-selling: from the publish of the event that ran a
// SKU's real stock out while the platform showed some, to the publish of
// the stock_set that took the platform's figure to sellable; and the
// ledger's share of it, to the arrival of the first instruction that
// reflects the run-out. A run-out the platform ends on its own (it sold
// out) or the merchant ends (a restock) gives no stop-selling sample. Not
// safe for concurrent use.
type stopClock struct {
	marked map[*simSKU]*runOut
	fresh  []*simSKU // ran out in the events being published
	lat    []float64 // stop-selling, ms
	told   []float64 // to the instruction's arrival, ms
	// toldFrom holds the run-outs of told, for commitTimes.split.
	toldFrom []runOut
	runOuts  int
}

// runOut is a SKU's real stock run out while the platform shows some:
// since when, the stream sequence of its last event in that publish (an
// instruction at or after it reflects the run-out), and whether such an
// instruction arrived.
type runOut struct {
	at   time.Time
	seq  uint64
	told bool
}

func (c *stopClock) ranOut(s *simSKU) { c.fresh = append(c.fresh, s) }

// publishedAt starts the clock of the SKUs that ran out in events,
// published at `at` and stored at acks (a SKU's first run-out holds until
// it ends).
func (c *stopClock) publishedAt(at time.Time, events []ledger.Event, acks []transport.Ack) {
	for _, s := range c.fresh {
		if _, ok := c.marked[s]; ok || s.listed <= 0 || s.realLimit() > 0 {
			continue
		}
		ro := &runOut{at: at}
		for i := len(events) - 1; i >= 0; i-- {
			if events[i].Shop == s.shop && events[i].SKU == s.sku {
				ro.seq = acks[i].Seq
				break
			}
		}
		c.marked[s] = ro
		c.runOuts++
	}
	c.fresh = c.fresh[:0]
}

// instructed sees an instruction of s at seq arrive at `at`.
func (c *stopClock) instructed(s *simSKU, seq uint64, at time.Time) {
	if ro, ok := c.marked[s]; ok && !ro.told && seq >= ro.seq && ro.seq > 0 {
		ro.told = true
		c.told = append(c.told, float64(at.Sub(ro.at).Microseconds())/1000)
		c.toldFrom = append(c.toldFrom, *ro)
	}
}

// stopped takes a sample of each of the platform's SKUs whose figure its
// stock_sets, published at `at`, took to sellable.
func (c *stopClock) stopped(skus []*simSKU, at time.Time) {
	for _, s := range skus {
		if ro, ok := c.marked[s]; ok && s.listed == s.sellable() {
			c.lat = append(c.lat, float64(at.Sub(ro.at).Microseconds())/1000)
			delete(c.marked, s)
		}
	}
}

// sweep forgets run-outs that ended without the adapter.
func (c *stopClock) sweep() {
	for s := range c.marked {
		if s.listed <= 0 || s.realLimit() > 0 {
			delete(c.marked, s)
		}
	}
}

// percentiles returns the p50, p99 and max of ms (sorting it), -1 each
// when it is empty.
func percentiles(ms []float64) (p50, p99, top float64) {
	if len(ms) == 0 {
		return -1, -1, -1
	}
	slices.Sort(ms)
	return ms[len(ms)/2], ms[min(len(ms)-1, len(ms)*99/100)], ms[len(ms)-1]
}

// commitTimes records when each batch of the projector committed (its
// Committed hook), by checkpoint. Safe for concurrent use.
type commitTimes struct {
	mu  sync.Mutex
	seq []uint64
	at  []time.Time
}

func (ct *commitTimes) committed(b consumers.BatchStats) {
	now := time.Now()
	ct.mu.Lock()
	ct.seq, ct.at = append(ct.seq, b.AppliedSeq), append(ct.at, now)
	ct.mu.Unlock()
}

// split returns the p50 and p99 of the time from each run-out's publish to
// the commit of the batch that held its event.
func (ct *commitTimes) split(runOuts []runOut) (p50, p99 float64) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	var ms []float64
	for _, ro := range runOuts {
		i := sort.Search(len(ct.seq), func(i int) bool { return ct.seq[i] >= ro.seq })
		if i < len(ct.seq) {
			ms = append(ms, float64(ct.at[i].Sub(ro.at).Microseconds())/1000)
		}
	}
	p50, p99, _ = percentiles(ms)
	return p50, p99
}
