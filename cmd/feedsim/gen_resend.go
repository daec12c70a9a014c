package main

import (
	"time"

	"stockledger/ledger"
)

// pendingResend is an event to publish again, identical, at step due.
type pendingResend struct {
	due int
	e   ledger.Event
}

// scheduleResends picks ResendShare of events to publish again ResendAfter
// steps from now. When the queue is full an event picked is not re-sent.
func (g *generator) scheduleResends(events []ledger.Event) {
	for i := range events {
		if g.rng.Float64() < g.c.ResendShare {
			g.resends.push(pendingResend{due: g.n + g.c.ResendAfter, e: cloneEvent(events[i])})
		}
	}
}

// resendDue appends the re-sends due by now, at most resendsPerStepMax: the
// rest wait for the next steps.
func (g *generator) resendDue(out []ledger.Event) []ledger.Event {
	for range resendsPerStepMax {
		p, ok := g.resends.front()
		if !ok || p.due > g.n {
			break
		}
		g.resends.pop()
		out = append(out, p.e)
	}
	return out
}

// cloneEvent copies e with its own optional fields, so that the re-send
// stays identical to what was first published whatever a caller does with
// the first.
func cloneEvent(e ledger.Event) ledger.Event {
	for _, p := range []**int64{&e.Stock, &e.Qty, &e.Restocked, &e.Counted} {
		if *p != nil {
			*p = ledger.Int64(**p)
		}
	}
	for _, p := range []**time.Time{&e.ShipBy, &e.DeliverBy} {
		if *p != nil {
			*p = ledger.Time(**p)
		}
	}
	return e
}

// queue is a first-in first-out queue of at most max items. It grows as it
// fills (a full queue's room is allocated only when used).
type queue[T any] struct {
	items []T
	head  int
	max   int
}

func (q *queue[T]) len() int { return len(q.items) - q.head }

// push adds v at the back; false, and v not added, when the queue holds max
// items.
func (q *queue[T]) push(v T) bool {
	if q.len() >= q.max {
		return false
	}
	if q.head > 0 && q.head >= len(q.items)/2 {
		// Move the items down over the popped half: amortized O(1).
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, v)
	return true
}

// front returns the oldest item, false when the queue is empty.
func (q *queue[T]) front() (T, bool) {
	if q.len() == 0 {
		var zero T
		return zero, false
	}
	return q.items[q.head], true
}

// pop removes the oldest item. Caller checked front.
func (q *queue[T]) pop() {
	var zero T
	q.items[q.head] = zero
	q.head++
}
