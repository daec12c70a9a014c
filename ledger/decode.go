package ledger

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// fieldKind is how a member of an event's JSON is stored in Event.
type fieldKind uint8

const (
	fieldString  fieldKind = iota // a string (or Type, SalesForm)
	fieldInt                      // an int64 or int
	fieldIntPtr                   // a *int64: absent and null leave it nil
	fieldTime                     // time.Time
	fieldTimePtr                  // *time.Time: absent and null leave it nil
)

// The members of an event's JSON, indexes into eventFields.
const (
	fID = iota
	fType
	fShop
	fSKU
	fAt
	fTitle
	fPriceFen
	fSalesForm
	fShipWithinHours
	fShipWithinDays
	fStock
	fOrderID
	fParentOrderID
	fUnitPriceFen
	fLiveID
	fShipBy
	fQty
	fRefundID
	fWaybill
	fReturnID
	fReceiptID
	fRestocked
	fCounted
	fCountedBy
	fSupplier
	fDeliverBy
	numFields
)

// eventFields names each member as the json tags of Event do (a test holds
// them to the tags) and says how it is stored.
var eventFields = [numFields]struct {
	name string
	kind fieldKind
}{
	{"id", fieldString}, {"type", fieldString}, {"shop", fieldString}, {"sku", fieldString}, {"at", fieldTime},
	{"title", fieldString}, {"price_fen", fieldInt}, {"sales_form", fieldString},
	{"ship_within_hours", fieldInt}, {"ship_within_days", fieldInt}, {"stock", fieldIntPtr},
	{"order_id", fieldString}, {"parent_order_id", fieldString}, {"unit_price_fen", fieldInt},
	{"live_id", fieldString}, {"ship_by", fieldTimePtr}, {"qty", fieldIntPtr},
	{"refund_id", fieldString}, {"waybill", fieldString}, {"return_id", fieldString}, {"receipt_id", fieldString},
	{"restocked", fieldIntPtr}, {"counted", fieldIntPtr}, {"counted_by", fieldString},
	{"supplier", fieldString}, {"deliver_by", fieldTimePtr},
}

// timeRule is the rule a time member that is not RFC 3339 breaks.
const timeRule = "must be an RFC 3339 time such as 2026-11-26T20:00:00+08:00"

// fieldByName returns the member a key names, given the key folded to
// lower case, or -1.
func fieldByName(folded []byte) int {
	switch string(folded) {
	case "id":
		return fID
	case "type":
		return fType
	case "shop":
		return fShop
	case "sku":
		return fSKU
	case "at":
		return fAt
	case "title":
		return fTitle
	case "price_fen":
		return fPriceFen
	case "sales_form":
		return fSalesForm
	case "ship_within_hours":
		return fShipWithinHours
	case "ship_within_days":
		return fShipWithinDays
	case "stock":
		return fStock
	case "order_id":
		return fOrderID
	case "parent_order_id":
		return fParentOrderID
	}
	return fieldByNameRest(folded)
}

func fieldByNameRest(folded []byte) int {
	switch string(folded) {
	case "unit_price_fen":
		return fUnitPriceFen
	case "live_id":
		return fLiveID
	case "ship_by":
		return fShipBy
	case "qty":
		return fQty
	case "refund_id":
		return fRefundID
	case "waybill":
		return fWaybill
	case "return_id":
		return fReturnID
	case "receipt_id":
		return fReceiptID
	case "restocked":
		return fRestocked
	case "counted":
		return fCounted
	case "counted_by":
		return fCountedBy
	case "supplier":
		return fSupplier
	case "deliver_by":
		return fDeliverBy
	}
	return -1
}

// foldedKeyMax is longer than every member name: a longer key names none.
const foldedKeyMax = 24

// foldKeyInto folds the key raw (a JSON string with its quotes) as
// encoding/json matches names, case-insensitively by simple folding: ASCII
// letters to lower case, and the only runes beyond ASCII that fold onto an
// ASCII letter, the Kelvin sign and the long s, to k and s. It reports
// false for a key that can name no member.
func foldKeyInto(dst *[foldedKeyMax]byte, raw []byte, esc, high bool) ([]byte, bool) {
	text := raw[1 : len(raw)-1]
	if esc || high {
		var tmp [4 * foldedKeyMax]byte
		if len(text) > len(tmp) {
			return nil, false
		}
		text = appendUnquoted(tmp[:0], raw)
	}
	n := 0
	for _, r := range string(text) {
		switch {
		case r == '\u212a':
			r = 'k'
		case r == '\u017f':
			r = 's'
		case r >= 'A' && r <= 'Z':
			r += 'a' - 'A'
		case r >= utf8.RuneSelf:
			return nil, false
		}
		if n == foldedKeyMax {
			return nil, false
		}
		dst[n] = byte(r)
		n++
	}
	return dst[:n], true
}

// parseInt reads a JSON number as strconv.ParseInt(s, 10, 64) does, which
// refuses a fraction, an exponent and a value beyond int64.
func parseInt(num []byte) (int64, bool) {
	neg := num[0] == '-'
	digits := num
	if neg {
		digits = num[1:]
	}
	var n uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (1<<63)/10 {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
		if n > 1<<63 {
			return 0, false
		}
	}
	if neg {
		return -int64(n), true // -1<<63 wraps to itself
	}
	if n > 1<<63-1 {
		return 0, false
	}
	return int64(n), true
}

// saved is the first problem encoding/json would have saved and reported
// after decoding the whole value: an unknown member or a value of the
// wrong JSON type.
type saved struct {
	set   bool
	field int       // the member, -1 for an unknown key, -2 for the event itself
	key   []byte    // an unknown key, with its quotes
	kind  valueKind // the JSON kind of the value
	raw   []byte    // the value
}

// err words the problem as the encoding/json decoder did.
func (s *saved) err() *FieldError {
	switch {
	case s.field == -1:
		name := strings.Trim(strconv.Quote(string(appendUnquoted(nil, s.key))), `"`)
		if name == "" {
			return &FieldError{Field: `""`, Rule: "unknown field (an empty name)"}
		}
		return &FieldError{Field: name, Rule: "unknown field"}
	case s.field == -2:
		return &FieldError{Field: "body", Value: s.kind.typeName(), Rule: "must be a JSON value of type ledger.Event"}
	case eventFields[s.field].kind == fieldString:
		return &FieldError{Field: eventFields[s.field].name, Value: s.kind.typeName(), Rule: "must be a JSON string"}
	}
	value := s.kind.typeName()
	if s.kind == kindNumber {
		value = "number " + string(s.raw)
	}
	return &FieldError{Field: eventFields[s.field].name, Value: value, Rule: "must be a JSON whole number"}
}

// timeError words the first time that did not parse, when the body is not
// one object alone (see badTime), as the encoding/json decoder did.
func timeError(err error) *FieldError {
	var pe *time.ParseError
	if errors.As(err, &pe) {
		return &FieldError{Field: "at", Value: quote(pe.Value), Rule: timeRule}
	}
	return &FieldError{Field: "body", Rule: err.Error()}
}

// sizeError refuses an event of n bytes, more than MaxEventBytes.
func sizeError(n int) *FieldError {
	return &FieldError{Field: "body", Value: fmt.Sprintf("%d bytes", n), Rule: fmt.Sprintf("an event must be at most %d bytes", MaxEventBytes)}
}
