package ledger

import (
	"errors"
	"fmt"
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
	// MaxIDLen bounds ids (order_id, parent_order_id, refund_id, waybill,
	// return_id, receipt_id, supplier, live_id), which become parts of
	// Nats-Msg-Id headers.
	MaxIDLen = 128
	// MaxTextLen bounds free text (title, counted_by) in bytes.
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

// Error names the field, the value and the rule.
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
	ids   idRule
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
// It is the rule for new events (HTTP, the publisher).
func (e *Event) Validate() error { return e.validate(0, strictIDs) }

// ValidateStored is Validate for an event already in the stream, as the
// projector checks it: it also accepts a supplier or live_id of free text
// (at most MaxTextLen bytes, no control characters), which the first
// version of the contract allowed, so that a stream written then folds to
// the same figures.
func (e *Event) ValidateStored() error { return e.validate(0, legacyIDs) }

// ValidateBatch validates every event of a batch and returns all problems of
// all events, each FieldError carrying its event's index.
func ValidateBatch(events []Event) error {
	var errs []error
	for i := range events {
		if err := events[i].validate(i, strictIDs); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// idRule says how supplier and live_id are checked.
type idRule bool

const (
	strictIDs idRule = false // the id pattern, as every other id
	legacyIDs idRule = true  // free text, as contract v1 had them
)

func (e *Event) validate(index int, ids idRule) error {
	p := &problems{index: index, ids: ids}
	if e.ID == "" {
		p.add("id", "", "required")
	} else if !isUUID(e.ID) {
		p.add("id", quote(e.ID), "must be a UUID in its 36-character form")
	}
	checkName(p, "shop", e.Shop)
	checkName(p, "sku", e.SKU)
	checkTime(p, "at", e.At)
	switch {
	case checkType(p, e):
		present, allowed := e.presentFields(), fieldsOf(e.Type)
		for f := fTitle; f < numFields; f++ {
			if present&^allowed&(1<<f) != 0 {
				p.add(eventFields[f].name, "", fmt.Sprintf("not a field of a %s event", e.Type))
			}
		}
	case e.Type == "":
		p.add("type", "", "required: one of "+typeList())
	default:
		p.add("type", quote(string(e.Type)), "must be one of "+typeList())
	}
	return errors.Join(p.errs...)
}

// checkType checks the rules of the event type's own fields, and reports
// false for a type that is not one of Types. A switch rather than a table:
// it costs no map lookup and lets p stay on the stack.
func checkType(p *problems, e *Event) bool {
	switch e.Type {
	case Listing:
		checkListing(p, e)
	case Delisting:
	case StockSet:
		checkQty(p, "stock", e.Stock, 0)
	case SafetyStockSet:
		checkQty(p, "qty", e.Qty, 0)
	case Restock:
		checkQty(p, "qty", e.Qty, 1)
		checkID(p, "receipt_id", e.ReceiptID, false)
	case Sale:
		checkSale(p, e)
	case Cancel:
		checkPart(p, e, "refund_id", e.RefundID, "a refund")
	case Shipment:
		checkPart(p, e, "waybill", e.Waybill, "a package")
	case Return:
		checkReturn(p, e)
	case PromiseChanged:
		checkID(p, "order_id", e.OrderID, true)
		checkRequiredTime(p, "ship_by", e.ShipBy, "required: the RFC 3339 time the platform now promises shipment by")
	case Recount:
		checkQty(p, "counted", e.Counted, 0)
		checkText(p, "counted_by", e.CountedBy, false)
	case CapacityConfirmed:
		p.checkFreeID("supplier", e.Supplier, true)
		checkQty(p, "qty", e.Qty, 0)
		checkRequiredTime(p, "deliver_by", e.DeliverBy, "required: RFC 3339 time the supplier delivers by")
	default:
		return false
	}
	return true
}

func checkSale(p *problems, e *Event) {
	checkID(p, "order_id", e.OrderID, true)
	checkQty(p, "qty", e.Qty, 1)
	checkPositive(p, "unit_price_fen", e.UnitPriceFen, MaxPriceFen)
	p.checkFreeID("live_id", e.LiveID, false)
	checkID(p, "parent_order_id", e.ParentOrderID, false)
	checkOptionalTime(p, "ship_by", e.ShipBy)
}

// checkRequiredTime checks a time field that must be present; missing is
// the rule for an absent one.
func checkRequiredTime(p *problems, field string, t *time.Time, missing string) {
	if t == nil {
		p.add(field, "", missing)
		return
	}
	checkTime(p, field, *t)
}

func checkListing(p *problems, e *Event) {
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
}

// checkPart checks a cancel or shipment: the line, and a qty that comes with
// its document (docField) or not at all.
func checkPart(p *problems, e *Event, docField, doc, what string) {
	checkID(p, "order_id", e.OrderID, true)
	switch {
	case e.Qty != nil && doc == "":
		p.add(docField, "", fmt.Sprintf("required with qty: it names %s, so that a re-send is applied once (without qty, every open unit of the line)", what))
	case e.Qty == nil && doc != "":
		p.add("qty", "", fmt.Sprintf("required with %s: a whole number from 1 to %d", docField, MaxQty))
	}
	if e.Qty != nil {
		checkQty(p, "qty", e.Qty, 1)
	}
	checkID(p, docField, doc, false)
}

func checkReturn(p *problems, e *Event) {
	checkID(p, "order_id", e.OrderID, true)
	checkQty(p, "qty", e.Qty, 1)
	checkID(p, "return_id", e.ReturnID, true)
	if e.Restocked == nil {
		return
	}
	switch r := *e.Restocked; {
	case r < 0:
		p.add("restocked", fmt.Sprint(r), fmt.Sprintf("must be from 0 to qty (%d)", Value(e.Qty)))
	case e.Qty != nil && *e.Qty >= 1 && r > *e.Qty:
		p.add("restocked", fmt.Sprint(r), fmt.Sprintf("must be at most qty (%d): only returned units go back on the shelf", *e.Qty))
	}
}

// fieldsOf returns the type-specific fields type t takes, as bits of
// eventFields.
func fieldsOf(t Type) uint32 {
	switch t {
	case Listing:
		return 1<<fTitle | 1<<fPriceFen | 1<<fStock | 1<<fSalesForm | 1<<fShipWithinHours | 1<<fShipWithinDays
	case StockSet:
		return 1 << fStock
	case SafetyStockSet:
		return 1 << fQty
	case Restock:
		return 1<<fQty | 1<<fReceiptID
	case Sale:
		return 1<<fOrderID | 1<<fQty | 1<<fUnitPriceFen | 1<<fLiveID | 1<<fParentOrderID | 1<<fShipBy
	case Cancel:
		return 1<<fOrderID | 1<<fQty | 1<<fRefundID
	case Shipment:
		return 1<<fOrderID | 1<<fQty | 1<<fWaybill
	case Return:
		return 1<<fOrderID | 1<<fQty | 1<<fReturnID | 1<<fRestocked
	case PromiseChanged:
		return 1<<fOrderID | 1<<fShipBy
	case Recount:
		return 1<<fCounted | 1<<fCountedBy
	case CapacityConfirmed:
		return 1<<fSupplier | 1<<fQty | 1<<fDeliverBy
	}
	return 0
}

// presentFields returns the type-specific fields the event holds (a
// non-zero value), as bits of eventFields.
func (e *Event) presentFields() uint32 {
	var fs uint32
	add := func(present bool, f int) {
		if present {
			fs |= 1 << f
		}
	}
	add(e.Title != "", fTitle)
	add(e.PriceFen != 0, fPriceFen)
	add(e.SalesForm != "", fSalesForm)
	add(e.ShipWithinHours != 0, fShipWithinHours)
	add(e.ShipWithinDays != 0, fShipWithinDays)
	add(e.Stock != nil, fStock)
	add(e.OrderID != "", fOrderID)
	add(e.ParentOrderID != "", fParentOrderID)
	add(e.UnitPriceFen != 0, fUnitPriceFen)
	add(e.LiveID != "", fLiveID)
	add(e.ShipBy != nil, fShipBy)
	add(e.Qty != nil, fQty)
	add(e.RefundID != "", fRefundID)
	add(e.Waybill != "", fWaybill)
	add(e.ReturnID != "", fReturnID)
	add(e.ReceiptID != "", fReceiptID)
	add(e.Restocked != nil, fRestocked)
	add(e.Counted != nil, fCounted)
	add(e.CountedBy != "", fCountedBy)
	add(e.Supplier != "", fSupplier)
	add(e.DeliverBy != nil, fDeliverBy)
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
	case !matches(v, MaxNameLen, isNameByte):
		p.add(field, quote(v), fmt.Sprintf("must match ^[A-Za-z0-9_-]{1,%d}$ (it becomes a NATS subject token)", MaxNameLen))
	}
}

// checkID checks an id (order_id, refund_id, waybill, …): required or not,
// and the id pattern.
func checkID(p *problems, field, v string, required bool) {
	switch {
	case v == "" && required:
		p.add(field, "", "required")
	case v != "" && !matches(v, MaxIDLen, isIDByte):
		p.add(field, quote(v), fmt.Sprintf("must match ^[A-Za-z0-9_.:-]{1,%d}$", MaxIDLen))
	}
}

// matches reports whether v is 1 to max bytes, each one ok: the pattern
// ^[ok bytes]{1,max}$ without a regular expression.
func matches(v string, max int, ok func(byte) bool) bool {
	if len(v) == 0 || len(v) > max {
		return false
	}
	for i := 0; i < len(v); i++ {
		if !ok(v[i]) {
			return false
		}
	}
	return true
}

// isNameByte is [A-Za-z0-9_-], the bytes of shop and sku.
func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// isIDByte is [A-Za-z0-9_.:-], the bytes of an id.
func isIDByte(c byte) bool { return isNameByte(c) || c == '.' || c == ':' }

// isUUID reports whether id is a UUID in its 36-character form, hex digits
// in either case: what uuid.Parse accepts at that length.
func isUUID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch i {
		case 8, 13, 18, 23:
			if id[i] != '-' {
				return false
			}
		default:
			if !isHex(id[i]) {
				return false
			}
		}
	}
	return true
}

// checkFreeID checks supplier and live_id: ids, or free text for a stored
// event (see ValidateStored).
func (p *problems) checkFreeID(field, v string, required bool) {
	if p.ids == legacyIDs {
		checkText(p, field, v, required)
		return
	}
	checkID(p, field, v, required)
}

// checkOptionalTime checks a time field that may be absent.
func checkOptionalTime(p *problems, field string, t *time.Time) {
	if t != nil {
		checkTime(p, field, *t)
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
