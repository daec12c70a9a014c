package ledger

import (
	"errors"
	"fmt"
)

// ErrRuleBroken is matched (errors.Is) by a RuleError.
var ErrRuleBroken = errors.New("rule broken")

// RuleError refuses an event that is valid on its own but breaks a rule
// against the SKU's current state (the seed's relisting rule). HTTP answers it
// with 409.
type RuleError struct {
	// Index is the event's position in its batch.
	Index int
	Field string
	Value string
	Rule  string
}

// Error names the event, the field, the value and the rule.
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
