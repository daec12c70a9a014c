package transport

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger"
)

// conflictRetriesMax bounds how often a listing is checked again after
// another writer appended to its SKU between the check and the publish.
const conflictRetriesMax = 8

// Catalog answers a SKU's listing state once the read model has applied the
// stream at least up to minSeq. Implementations wait, bounded, and return an
// error when the projection does not get there in time.
type Catalog interface {
	ListingState(ctx context.Context, shop, sku string, minSeq uint64) (ledger.ListingState, error)
}

// Append is the command path: it admits the batch (Admit), checks every
// listing against the SKU's state (the read model at the SKU subject's last
// stream sequence, and the batch's own earlier events), and publishes the
// batch in order. Listings are published with
// Nats-Expected-Last-Subject-Sequence, so that two racing relistings cannot
// both pass: the loser is checked again against the winner's state. A batch
// with an invalid event or a broken rule appends nothing, unless another
// writer relisted a SKU while the batch was being published: then the
// returned acks name the events already stored, beside the *ledger.RuleError.
func (p *Publisher) Append(ctx context.Context, catalog Catalog, events []ledger.Event) ([]Ack, error) {
	if err := p.Admit(events); err != nil {
		return nil, err
	}
	if err := p.checkListings(ctx, catalog, events); err != nil {
		return nil, err
	}
	acks := make([]Ack, 0, len(events))
	start := 0
	for i := range events {
		if events[i].Type != ledger.Listing {
			continue
		}
		if start < i {
			part, err := p.publishAdmitted(ctx, events[start:i])
			acks = append(acks, part...)
			if err != nil {
				return acks, err
			}
		}
		// A listing waits for the acks before it and carries its SKU
		// subject's expected last sequence.
		ack, err := p.publishListing(ctx, catalog, &events[i], i)
		if err != nil {
			return acks, err
		}
		acks = append(acks, ack)
		start = i + 1
	}
	part, err := p.publishAdmitted(ctx, events[start:])
	return append(acks, part...), err
}

// checkListings applies the listing rule to every listing of the batch
// before anything is appended.
func (p *Publisher) checkListings(ctx context.Context, catalog Catalog, events []ledger.Event) error {
	type skuKey struct{ shop, sku string }
	states := make(map[skuKey]ledger.ListingState)
	for i := range events {
		e := &events[i]
		k := skuKey{e.Shop, e.SKU}
		st, seen := states[k]
		if !seen && (e.Type == ledger.Listing || e.Type == ledger.Delisting) {
			var err error
			if st, _, err = p.currentListing(ctx, catalog, e.Shop, e.SKU); err != nil {
				return err
			}
			seen = true
		}
		if !seen {
			continue
		}
		if rerr := ledger.CheckListing(st, e); rerr != nil {
			rerr.Index = i
			return rerr
		}
		states[k] = st.Next(e)
	}
	return nil
}

// publishListing publishes one listing conditionally on its SKU subject's last
// sequence, checking the rule again whenever another writer got there first.
func (p *Publisher) publishListing(ctx context.Context, catalog Catalog, e *ledger.Event, index int) (Ack, error) {
	for attempt := 0; attempt < conflictRetriesMax; attempt++ {
		st, last, err := p.currentListing(ctx, catalog, e.Shop, e.SKU)
		if err != nil {
			return Ack{ID: e.ID}, err
		}
		if rerr := ledger.CheckListing(st, e); rerr != nil {
			rerr.Index = index
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
func (p *Publisher) currentListing(ctx context.Context, catalog Catalog, shop, sku string) (ledger.ListingState, uint64, error) {
	last, err := p.history.LastSeq(ctx, shop, sku)
	if err != nil {
		return ledger.ListingState{}, 0, fmt.Errorf("last event of %s/%s: %w", shop, sku, err)
	}
	st, err := catalog.ListingState(ctx, shop, sku, last)
	if err != nil {
		return ledger.ListingState{}, 0, fmt.Errorf("listing state of %s/%s at seq %d: %w", shop, sku, last, err)
	}
	return st, last, nil
}
