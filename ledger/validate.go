package ledger

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Domain limits, checked by Validate.
const (
	// MaxNameLen bounds shop and sku, which become NATS subject tokens.
	MaxNameLen = 64
	// MaxOrderIDLen bounds order ids, which become Nats-Msg-Id headers.
	MaxOrderIDLen = 128
	// MaxTextLen bounds free text (title, counted_by, supplier, live_id) in bytes.
	MaxTextLen = 256
	// MaxQty bounds every quantity in one event (units).
	MaxQty = 1_000_000_000
	// MaxPriceFen bounds prices: 10 million yuan. With MaxQty it keeps an
	// order's value (qty × unit price) within int64.
	MaxPriceFen = 1_000_000_000
	// MaxFutureSkew is how far ahead of the ingest clock an `at` may lie.
	MaxFutureSkew = 10 * time.Minute
	// MinShipDays is the shortest presale promise of the seed.
	MinShipDays = 4
	// MaxShipDays is the longest presale promise of the seed.
	MaxShipDays = 90
)

// MinAt and MaxAt bound every timestamp of an event.
var (
	MinAt = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	MaxAt = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

var (
	namePattern  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	orderPattern = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)
)

// ErrInvalidEvent is matched (errors.Is) by every validation error.
var ErrInvalidEvent = errors.New("invalid event")

// FieldError is one problem with one field of one event: the field, the value
// it had, and the rule it broke. Index is the event's position in a batch
// (0 for a single event).
type FieldError struct {
	Index int    `json:"index"`
	Field string `json:"field"`
	Value string `json:"value,omitempty"`
	Rule  string `json:"rule"`
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Rule)
	}
	return fmt.Sprintf("%s %s: %s", e.Field, e.Value, e.Rule)
}

// Is makes every FieldError match ErrInvalidEvent.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidEvent }

// FieldErrors returns every FieldError inside err (as joined by Validate or
// ValidateBatch), in order.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if fe, ok := err.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

type problems struct {
	index int
	errs  []error
}

func (p *problems) add(field, value, rule string) {
	p.errs = append(p.errs, &FieldError{Index: p.index, Field: field, Value: value, Rule: rule})
}

// Normalize fills what an event may leave out: a fresh id (UUID v4) and `at`
// as the ingest time. It changes nothing else.
func (e *Event) Normalize(now time.Time) {
	if e.ID == "" {
		e.ID = uuid.NewString()
	}
	if e.At.IsZero() {
		// Microseconds: what Postgres keeps, so both read models agree.
		e.At = now.UTC().Truncate(time.Microsecond)
	}
}

// CheckClock refuses an `at` (or `deliver_by`-independent) timestamp further in
// the future of the ingest clock `now` than MaxFutureSkew. It is checked at
// ingest only: a stored event is never re-judged against a later clock.
func (e *Event) CheckClock(now time.Time) error {
	if e.At.After(now.Add(MaxFutureSkew)) {
		return &FieldError{Field: "at", Value: e.At.Format(time.RFC3339), Rule: fmt.Sprintf("must not be more than %s after the ingest time %s", MaxFutureSkew, now.UTC().Format(time.RFC3339))}
	}
	return nil
}

// Validate checks every rule of the event's type and returns all problems at
// once, joined; each is a *FieldError that names its field (errors.Is(err,
// ErrInvalidEvent) holds). It expects a normalized event: id and at present.
func (e *Event) Validate() error { return e.validate(0) }

// ValidateBatch validates every event of a batch and returns all problems of
// all events, each FieldError carrying its event's index.
func ValidateBatch(events []Event) error {
	var errs []error
	for i := range events {
		if err := events[i].validate(i); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (e *Event) validate(index int) error {
	p := &problems{index: index}
	if e.ID == "" {
		p.add("id", "", "required")
	} else if u, err := uuid.Parse(e.ID); err != nil || len(e.ID) != 36 || u.String() != strings.ToLower(e.ID) {
		p.add("id", quote(e.ID), "must be a UUID in its 36-character form")
	}
	checkName(p, "shop", e.Shop)
	checkName(p, "sku", e.SKU)
	checkTime(p, "at", e.At)

	known := true
	switch e.Type {
	case Listing:
		checkText(p, "title", e.Title, true)
		checkPositive(p, "price_fen", e.PriceFen, MaxPriceFen)
		checkQty(p, "stock", e.Stock, 0)
		switch e.SalesForm {
		case Spot:
			if h := e.ShipWithinHours; h != 24 && h != 48 && h != 72 {
				p.add("ship_within_hours", fmt.Sprint(h), "must be 24, 48 or 72 for a spot listing")
			}
			if e.ShipWithinDays != 0 {
				p.add("ship_within_days", fmt.Sprint(e.ShipWithinDays), "only a presale listing has ship_within_days")
			}
		case Presale:
			if d := e.ShipWithinDays; d < MinShipDays || d > MaxShipDays {
				p.add("ship_within_days", fmt.Sprint(d), fmt.Sprintf("must be %d to %d for a presale listing", MinShipDays, MaxShipDays))
			}
			if e.ShipWithinHours != 0 {
				p.add("ship_within_hours", fmt.Sprint(e.ShipWithinHours), "only a spot listing has ship_within_hours")
			}
		case "":
			p.add("sales_form", "", "required: spot or presale")
		default:
			p.add("sales_form", quote(string(e.SalesForm)), "must be spot or presale")
		}
	case Delisting:
	case StockSet:
		checkQty(p, "stock", e.Stock, 0)
	case Restock:
		checkQty(p, "qty", e.Qty, 1)
	case Sale:
		checkOrder(p, e.OrderID)
		checkQty(p, "qty", e.Qty, 1)
		checkPositive(p, "unit_price_fen", e.UnitPriceFen, MaxPriceFen)
		checkText(p, "live_id", e.LiveID, false)
	case Cancel, Shipment:
		checkOrder(p, e.OrderID)
	case Recount:
		checkQty(p, "counted", e.Counted, 0)
		checkText(p, "counted_by", e.CountedBy, false)
	case CapacityConfirmed:
		checkText(p, "supplier", e.Supplier, true)
		checkQty(p, "qty", e.Qty, 0)
		if e.DeliverBy == nil {
			p.add("deliver_by", "", "required: RFC 3339 time the supplier delivers by")
		} else {
			checkTime(p, "deliver_by", *e.DeliverBy)
		}
	case "":
		known = false
		p.add("type", "", "required: one of "+typeList())
	default:
		known = false
		p.add("type", quote(string(e.Type)), "must be one of "+typeList())
	}
	if known {
		for _, f := range e.presentFields() {
			if !fieldAllowed(e.Type, f) {
				p.add(f, "", fmt.Sprintf("not a field of a %s event", e.Type))
			}
		}
	}
	return errors.Join(p.errs...)
}

// fieldsByType lists the type-specific fields each type takes.
var fieldsByType = map[Type][]string{
	Listing:           {"title", "price_fen", "stock", "sales_form", "ship_within_hours", "ship_within_days"},
	StockSet:          {"stock"},
	Restock:           {"qty"},
	Sale:              {"order_id", "qty", "unit_price_fen", "live_id"},
	Cancel:            {"order_id"},
	Shipment:          {"order_id"},
	Recount:           {"counted", "counted_by"},
	CapacityConfirmed: {"supplier", "qty", "deliver_by"},
}

func fieldAllowed(t Type, field string) bool {
	for _, f := range fieldsByType[t] {
		if f == field {
			return true
		}
	}
	return false
}

func (e *Event) presentFields() []string {
	var fs []string
	add := func(present bool, name string) {
		if present {
			fs = append(fs, name)
		}
	}
	add(e.Title != "", "title")
	add(e.PriceFen != 0, "price_fen")
	add(e.SalesForm != "", "sales_form")
	add(e.ShipWithinHours != 0, "ship_within_hours")
	add(e.ShipWithinDays != 0, "ship_within_days")
	add(e.Stock != nil, "stock")
	add(e.OrderID != "", "order_id")
	add(e.UnitPriceFen != 0, "unit_price_fen")
	add(e.LiveID != "", "live_id")
	add(e.Qty != nil, "qty")
	add(e.Counted != nil, "counted")
	add(e.CountedBy != "", "counted_by")
	add(e.Supplier != "", "supplier")
	add(e.DeliverBy != nil, "deliver_by")
	return fs
}

func typeList() string {
	names := make([]string, len(Types))
	for i, t := range Types {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

func checkName(p *problems, field, v string) {
	switch {
	case v == "":
		p.add(field, "", "required")
	case !namePattern.MatchString(v):
		p.add(field, quote(v), fmt.Sprintf("must match ^[A-Za-z0-9_-]{1,%d}$ (it becomes a NATS subject token)", MaxNameLen))
	}
}

func checkOrder(p *problems, v string) {
	switch {
	case v == "":
		p.add("order_id", "", "required")
	case !orderPattern.MatchString(v):
		p.add("order_id", quote(v), fmt.Sprintf("must match ^[A-Za-z0-9_.:-]{1,%d}$", MaxOrderIDLen))
	}
}

func checkText(p *problems, field, v string, required bool) {
	switch {
	case v == "" && required:
		p.add(field, "", "required")
	case len(v) > MaxTextLen:
		p.add(field, quote(v), fmt.Sprintf("must be at most %d bytes", MaxTextLen))
	case !utf8.ValidString(v):
		p.add(field, quote(v), "must be valid UTF-8")
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		p.add(field, quote(v), "must not contain control characters")
	}
}

func checkPositive(p *problems, field string, v, max int64) {
	if v <= 0 || v > max {
		p.add(field, fmt.Sprint(v), fmt.Sprintf("must be from 1 to %d", max))
	}
}

func checkQty(p *problems, field string, v *int64, min int64) {
	switch {
	case v == nil:
		p.add(field, "", fmt.Sprintf("required: a whole number from %d to %d", min, MaxQty))
	case *v < min || *v > MaxQty:
		p.add(field, fmt.Sprint(*v), fmt.Sprintf("must be from %d to %d", min, MaxQty))
	}
}

func checkTime(p *problems, field string, t time.Time) {
	switch {
	case t.IsZero():
		p.add(field, "", "required: an RFC 3339 time")
	case t.Before(MinAt) || !t.Before(MaxAt):
		p.add(field, t.Format(time.RFC3339), fmt.Sprintf("must lie from %s to %s", MinAt.Format("2006-01-02"), MaxAt.Format("2006-01-02")))
	}
}

// quote shows a value in an error safely: control characters and invalid
// UTF-8 escaped, long values cut.
func quote(v string) string {
	const show = 80
	if len(v) > show {
		v = v[:show] + "…"
	}
	return fmt.Sprintf("%q", v)
}
