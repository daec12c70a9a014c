package consumers

import (
	"context"
	"errors"

	"stockledger/ledger"
	"stockledger/projections"
)

// skuReader is the one read of the read model that ListingState makes.
type skuReader interface {
	SKU(ctx context.Context, shop, sku string) (projections.View, error)
}

// listingState reads what the listing rule needs to know of a SKU from its
// committed view, for Projector.ListingState and Partitioned.ListingState
// (transport.Catalog). A SKU no event has named is not known.
func listingState(ctx context.Context, r skuReader, shop, sku string) (ledger.ListingState, error) {
	v, err := r.SKU(ctx, shop, sku)
	if errors.Is(err, projections.ErrNotFound) {
		return ledger.ListingState{}, nil
	}
	if err != nil {
		return ledger.ListingState{}, err
	}
	return ledger.ListingState{
		Known: v.Status != projections.StatusUnlisted, Listed: v.Status == projections.StatusListed,
		SalesForm: ledger.SalesForm(v.SalesForm), ShipWithinHours: v.ShipWithinHours, ShipWithinDays: v.ShipWithinDays,
	}, nil
}
