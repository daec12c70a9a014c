package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// conflictRetriesMax bounds how often a listing is checked again after
// another writer appended to its SKU between the check and the publish.
const conflictRetriesMax = 8

// ErrRuleBroken is matched (errors.Is) by a RuleError.
var ErrRuleBroken = errors.New("rule broken")

// RuleError refuses an event that is valid on its own but breaks a rule
// against the SKU's current state (the seed's relisting rule). HTTP answers it
// with 409.
type RuleError struct {
	Index int
	Field string
	Value string
	Rule  string
	// Appended holds the acks of events of the same batch already stored
	// when the conflict was found during publishing (after a concurrent
	// writer changed the SKU); empty when nothing was appended.
	Appended []Ack
}

func (e *RuleError) Error() string {
	return fmt.Sprintf("event %d: %s %s: %s", e.Index, e.Field, e.Value, e.Rule)
}

// Is makes every RuleError match ErrRuleBroken.
func (e *RuleError) Is(target error) bool { return target == ErrRuleBroken }

// ListingState is what the listing rule needs to know of a SKU.
type ListingState struct {
	// Known is false for a SKU with no listing yet.
	Known           bool
	Listed          bool
	SalesForm       SalesForm
	ShipWithinHours int
	ShipWithinDays  int
}

// Catalog answers a SKU's listing state once the read model has applied the
// stream at least up to minSeq. Implementations wait, bounded, and return an
// error when the projection does not get there in time.
type Catalog interface {
	ListingState(ctx context.Context, shop, sku string, minSeq uint64) (ListingState, error)
}

// CheckListing applies the seed's rule to a listing event against the state
// before it: while a product is listed, its sales form and ship promise
// change only by delisting, editing and listing again.
func CheckListing(st ListingState, e *Event) *RuleError {
	if e.Type != Listing || !st.Known || !st.Listed {
		return nil
	}
	if st.SalesForm != e.SalesForm {
		return &RuleError{Field: "sales_form", Value: string(e.SalesForm), Rule: fmt.Sprintf("the SKU is listed as %s: a sales form changes only after a delisting", st.SalesForm)}
	}
	if st.ShipWithinHours != e.ShipWithinHours {
		return &RuleError{Field: "ship_within_hours", Value: fmt.Sprint(e.ShipWithinHours), Rule: fmt.Sprintf("the SKU is listed with ship_within_hours %d: a ship promise changes only after a delisting", st.ShipWithinHours)}
	}
	if st.ShipWithinDays != e.ShipWithinDays {
		return &RuleError{Field: "ship_within_days", Value: fmt.Sprint(e.ShipWithinDays), Rule: fmt.Sprintf("the SKU is listed with ship_within_days %d: a ship promise changes only after a delisting", st.ShipWithinDays)}
	}
	return nil
}

// Next returns the listing state after e.
func (st ListingState) Next(e *Event) ListingState {
	switch e.Type {
	case Listing:
		return ListingState{Known: true, Listed: true, SalesForm: e.SalesForm, ShipWithinHours: e.ShipWithinHours, ShipWithinDays: e.ShipWithinDays}
	case Delisting:
		st.Listed = false
	}
	return st
}

// Append is the command path: it prepares the batch, checks every listing
// against the SKU's state (the read model at the SKU subject's last stream
// sequence, and the batch's own earlier events), and publishes the batch in
// order. Listings are published with Nats-Expected-Last-Subject-Sequence, so
// that two racing relistings cannot both pass: the loser is checked again
// against the winner's state. A batch with an invalid event or a broken rule
// appends nothing.
func (p *Publisher) Append(ctx context.Context, catalog Catalog, events []Event) ([]Ack, error) {
	if err := p.Prepare(events); err != nil {
		return nil, err
	}
	hasListing := false
	for i := range events {
		hasListing = hasListing || events[i].Type == Listing
	}
	if !hasListing {
		return p.publishPrepared(ctx, events)
	}
	stream, err := p.js.Stream(ctx, EventStream)
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", EventStream, err)
	}

	// Check every listing before anything is appended.
	type skuKey struct{ shop, sku string }
	states := make(map[skuKey]ListingState)
	for i := range events {
		e := &events[i]
		k := skuKey{e.Shop, e.SKU}
		st, seen := states[k]
		if !seen && (e.Type == Listing || e.Type == Delisting) {
			if st, _, err = currentListing(ctx, stream, catalog, e.Shop, e.SKU); err != nil {
				return nil, err
			}
			seen = true
		}
		if !seen {
			continue
		}
		if rerr := CheckListing(st, e); rerr != nil {
			rerr.Index = i
			return nil, rerr
		}
		states[k] = st.Next(e)
	}

	// Publish in order; a listing waits for the acks before it and carries
	// its SKU subject's expected last sequence.
	acks := make([]Ack, 0, len(events))
	start := 0
	for i := range events {
		if events[i].Type != Listing {
			continue
		}
		if start < i {
			part, err := p.publishPrepared(ctx, events[start:i])
			acks = append(acks, part...)
			if err != nil {
				return acks, err
			}
		}
		ack, err := p.publishListing(ctx, stream, catalog, &events[i], i, acks)
		if err != nil {
			return acks, err
		}
		acks = append(acks, ack)
		start = i + 1
	}
	if start < len(events) {
		part, err := p.publishPrepared(ctx, events[start:])
		acks = append(acks, part...)
		if err != nil {
			return acks, err
		}
	}
	return acks, nil
}

// publishListing publishes one listing conditionally on its SKU subject's last
// sequence, checking the rule again whenever another writer got there first.
func (p *Publisher) publishListing(ctx context.Context, stream jetstream.Stream, catalog Catalog, e *Event, index int, appended []Ack) (Ack, error) {
	for attempt := 0; attempt < conflictRetriesMax; attempt++ {
		st, last, err := currentListing(ctx, stream, catalog, e.Shop, e.SKU)
		if err != nil {
			return Ack{ID: e.ID}, err
		}
		if rerr := CheckListing(st, e); rerr != nil {
			rerr.Index, rerr.Appended = index, appended
			return Ack{ID: e.ID}, rerr
		}
		ack, err := p.publishSync(ctx, e, jetstream.WithExpectLastSequencePerSubject(last))
		if IsWrongLastSequence(err) {
			continue
		}
		if err != nil {
			return Ack{ID: e.ID}, err
		}
		return Ack{ID: e.ID, Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
	}
	return Ack{ID: e.ID}, fmt.Errorf("publish listing %s: SKU %s/%s kept changing: %d conflicts in a row", e.ID, e.Shop, e.SKU, conflictRetriesMax)
}

// currentListing reads the SKU subject's last stream sequence, then the
// listing state from the catalog once it has applied that sequence.
func currentListing(ctx context.Context, stream jetstream.Stream, catalog Catalog, shop, sku string) (ListingState, uint64, error) {
	var last uint64
	// Stored subject: the partition token, when there is one, is part of it.
	msg, err := stream.GetLastMsgForSubject(ctx, StoredEventSubject(shop, sku, EventPartitions(stream.CachedInfo().Config)))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return ListingState{}, 0, fmt.Errorf("last event of %s/%s: %w", shop, sku, err)
	default:
		last = msg.Sequence
	}
	st, err := catalog.ListingState(ctx, shop, sku, last)
	if err != nil {
		return ListingState{}, 0, fmt.Errorf("listing state of %s/%s at seq %d: %w", shop, sku, last, err)
	}
	return st, last, nil
}
