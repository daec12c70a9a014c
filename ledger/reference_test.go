package ledger

// The decoder and validator as they were before the hand-written decoder
// (commit eeab621): encoding/json reflection behind a scan for what it lets
// through. They are kept here, unchanged but for the ref prefix, as the
// reference FuzzDecodeSame holds the production code to.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// refDecodeEvent decodes one event strictly: an unknown field, a field given
// twice (case-insensitively), bytes that are not UTF-8, nesting deeper than
// MaxJSONDepth, a value of the wrong JSON type or trailing data is an error
// naming the field. It does not validate the rules; call Validate.
func refDecodeEvent(data []byte) (Event, error) {
	var e Event
	if len(data) > MaxEventBytes {
		return e, &FieldError{Field: "body", Value: fmt.Sprintf("%d bytes", len(data)), Rule: fmt.Sprintf("an event must be at most %d bytes", MaxEventBytes)}
	}
	if fe := refScanObject(data); fe != nil {
		return e, fe
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		if fe := refBadTime(data); fe != nil {
			return e, fe
		}
		return e, refJsonError(0, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return e, &FieldError{Field: "body", Rule: "must hold one JSON object and nothing after it"}
	}
	return e, nil
}

// refDecodeEvents decodes a request body holding one event object or an array of
// at most MaxBatch events, strictly as refDecodeEvent does.
func refDecodeEvents(data []byte) ([]Event, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, &FieldError{Field: "body", Rule: "required: one event object or an array of events"}
	}
	if trimmed[0] != '[' {
		e, err := refDecodeEvent(data)
		if err != nil {
			return nil, err
		}
		return []Event{e}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if _, err := dec.Token(); err != nil {
		return nil, refJsonError(0, err)
	}
	var events []Event
	for i := 0; dec.More(); i++ {
		if i == MaxBatch {
			return nil, &FieldError{Field: "body", Value: fmt.Sprintf("more than %d events", MaxBatch), Rule: fmt.Sprintf("a batch holds at most %d events", MaxBatch)}
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, refJsonError(i, err)
		}
		e, err := refDecodeEvent(raw)
		if err != nil {
			for _, fe := range FieldErrors(err) {
				fe.Index = i
			}
			return nil, err
		}
		events = append(events, e)
	}
	if _, err := dec.Token(); err != nil {
		return nil, refJsonError(len(events), err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &FieldError{Field: "body", Rule: "must hold one JSON array and nothing after it"}
	}
	if len(events) == 0 {
		return nil, &FieldError{Field: "body", Value: "[]", Rule: "a batch holds at least one event"}
	}
	return events, nil
}

// refJsonError turns a decoding error into a FieldError naming the field where
// encoding/json tells it.
func refJsonError(index int, err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	var timeErr *time.ParseError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		return &FieldError{Index: index, Field: field, Value: typeErr.Value, Rule: "must be a JSON " + refJsonKind(typeErr.Type.String())}
	case errors.As(err, &syntaxErr):
		return &FieldError{Index: index, Field: "body", Rule: fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)}
	case errors.As(err, &timeErr):
		return &FieldError{Index: index, Field: "at", Value: refQuote(timeErr.Value), Rule: "must be an RFC 3339 time such as 2026-11-26T20:00:00+08:00"}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &FieldError{Index: index, Field: "body", Rule: "malformed JSON: unexpected end of input"}
	}
	// encoding/json has no typed error for unknown fields; its message is stable.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if name = strings.Trim(name, `"`); name == "" {
			return &FieldError{Index: index, Field: `""`, Rule: "unknown field (an empty name)"}
		}
		return &FieldError{Index: index, Field: name, Rule: "unknown field"}
	}
	return &FieldError{Index: index, Field: "body", Rule: err.Error()}
}

// refBadTime finds a time field that does not hold an RFC 3339 string:
// encoding/json does not name the field of a time.Time that failed.
func refBadTime(data []byte) *FieldError {
	var times struct {
		At        json.RawMessage `json:"at"`
		DeliverBy json.RawMessage `json:"deliver_by"`
		ShipBy    json.RawMessage `json:"ship_by"`
	}
	if json.Unmarshal(data, &times) != nil {
		return nil
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"at", times.At}, {"deliver_by", times.DeliverBy}, {"ship_by", times.ShipBy}} {
		if len(f.raw) == 0 || string(f.raw) == "null" {
			continue
		}
		var t time.Time
		if err := t.UnmarshalJSON(f.raw); err != nil {
			return &FieldError{Field: f.name, Value: refQuote(string(f.raw)), Rule: "must be an RFC 3339 time such as 2026-11-26T20:00:00+08:00"}
		}
	}
	return nil
}

func refJsonKind(goType string) string {
	switch {
	case strings.Contains(goType, "int"):
		return "whole number"
	case goType == "string" || strings.HasSuffix(goType, "ledger.Type") || strings.HasSuffix(goType, "ledger.SalesForm"):
		return "string"
	case strings.Contains(goType, "Time"):
		return "RFC 3339 string"
	}
	return "value of type " + goType
}

// refScanObject checks what encoding/json lets through silently: a key given
// twice (encoding/json keeps the last, and it matches keys case-insensitively,
// so "qty" and "QTY" are the same field to it), bytes that are not UTF-8 (it
// replaces them with U+FFFD), and nesting deeper than MaxJSONDepth. It
// returns nil for anything that is not a JSON object, or is malformed: the
// decoder reports those.
func refScanObject(data []byte) *FieldError {
	s := refScanner{data: data}
	s.space()
	if s.peek() != '{' {
		return nil
	}
	s.i++
	seen := make(map[string]string, 16)
	for {
		s.space()
		if s.peek() == '}' {
			return nil
		}
		raw, ok := s.str()
		if !ok {
			return nil
		}
		key, ok := refPlainKey(raw)
		if !ok && json.Unmarshal(raw, &key) != nil {
			return nil
		}
		if !utf8.Valid(raw) {
			return &FieldError{Field: "body", Value: refQuote(string(raw)), Rule: "a field name must be valid UTF-8"}
		}
		folded := refFoldKey(key)
		if first, dup := seen[folded]; dup {
			rule := "given twice: each field at most once"
			if first != key {
				rule = fmt.Sprintf("given twice (as %q and %q; field names match case-insensitively): each field at most once", first, key)
			}
			return &FieldError{Field: refFieldLabel(strings.ToLower(key)), Rule: rule}
		}
		seen[folded] = key
		s.space()
		if s.peek() != ':' {
			return nil
		}
		s.i++
		s.space()
		start := s.i
		depth, ok := s.value(1)
		if !ok {
			return nil
		}
		if depth > MaxJSONDepth {
			return &FieldError{Field: refFieldLabel(key), Rule: fmt.Sprintf("nested %d levels deep: at most %d", depth, MaxJSONDepth)}
		}
		if v := data[start:s.i]; !utf8.Valid(v) {
			return &FieldError{Field: refFieldLabel(key), Value: refQuote(strings.Trim(string(v), `"`)), Rule: "must be valid UTF-8"}
		}
		s.space()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			return nil
		default:
			return nil
		}
	}
}

// refPlainKey returns the key a quoted JSON string holds when it is printable
// ASCII without escapes, as every key of a well-formed event is: then it is
// the bytes between the quotes. Other keys go through encoding/json.
func refPlainKey(raw []byte) (string, bool) {
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c < 0x20 || c >= 0x80 || c == '\\' {
			return "", false
		}
	}
	return string(inner), true
}

// refFieldLabel names a field in an error; an empty name shows as "".
func refFieldLabel(key string) string {
	if key == "" {
		return `""`
	}
	return key
}

// refFoldKey maps a key to the same string for every key bytes.EqualFold (and
// so encoding/json) takes as equal: each rune to the smallest of its simple
// case-folding orbit.
func refFoldKey(k string) string {
	ascii := true
	for i := 0; i < len(k) && ascii; i++ {
		ascii = k[i] < utf8.RuneSelf
	}
	if ascii {
		// An ASCII letter's orbit is itself, its other case and at most
		// one non-ASCII rune (K: the Kelvin sign, S: the long s), both
		// above 'Z': the smallest is the upper case.
		return strings.ToUpper(k)
	}
	return refFoldRunes(k)
}

// refFoldRunes is refFoldKey rune by rune, for any key.
func refFoldRunes(k string) string {
	var b strings.Builder
	for _, r := range k {
		low := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			low = min(low, f)
		}
		b.WriteRune(low)
	}
	return b.String()
}

type refScanner struct {
	data []byte
	i    int
}

func (s *refScanner) peek() byte {
	if s.i < len(s.data) {
		return s.data[s.i]
	}
	return 0
}

func (s *refScanner) space() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// str reads a JSON string and returns it quoted, as in the input.
func (s *refScanner) str() ([]byte, bool) {
	if s.peek() != '"' {
		return nil, false
	}
	start := s.i
	for s.i++; s.i < len(s.data); s.i++ {
		switch s.data[s.i] {
		case '\\':
			s.i++
		case '"':
			s.i++
			return s.data[start:s.i], true
		}
	}
	return nil, false
}

// value skips one JSON value and returns its nesting depth (1 for a
// scalar). It stops early, reporting the depth reached, once that passes
// MaxJSONDepth.
func (s *refScanner) value(depth int) (int, bool) {
	switch s.peek() {
	case '"':
		_, ok := s.str()
		return depth, ok
	case '{', '[':
		closer := byte('}')
		if s.peek() == '[' {
			closer = ']'
		}
		if depth+1 > MaxJSONDepth {
			return depth + 1, true
		}
		s.i++
		deepest := depth + 1
		for {
			s.space()
			if s.peek() == closer {
				s.i++
				return deepest, true
			}
			if closer == '}' {
				if _, ok := s.str(); !ok {
					return 0, false
				}
				s.space()
				if s.peek() != ':' {
					return 0, false
				}
				s.i++
				s.space()
			}
			d, ok := s.value(depth + 1)
			if !ok {
				return 0, false
			}
			if d > MaxJSONDepth {
				return d, true
			}
			deepest = max(deepest, d)
			s.space()
			if s.peek() == ',' {
				s.i++
			}
		}
	default:
		start := s.i
		for s.i < len(s.data) {
			switch s.data[s.i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return depth, s.i > start
			}
			s.i++
		}
		return depth, false
	}
}

var (
	refNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	refIdPattern   = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)
)

func refValidate(e *Event, index int, ids idRule) error {
	p := &problems{index: index, ids: ids}
	if e.ID == "" {
		p.add("id", "", "required")
	} else if u, err := uuid.Parse(e.ID); err != nil || len(e.ID) != 36 || u.String() != strings.ToLower(e.ID) {
		p.add("id", refQuote(e.ID), "must be a UUID in its 36-character form")
	}
	refCheckName(p, "shop", e.Shop)
	refCheckName(p, "sku", e.SKU)
	refCheckTime(p, "at", e.At)
	check, known := refTypeChecks[e.Type]
	switch {
	case known:
		check(p, e)
		for _, f := range refPresentFields(e) {
			if !slices.Contains(refFieldsByType[e.Type], f) {
				p.add(f, "", fmt.Sprintf("not a field of a %s event", e.Type))
			}
		}
	case e.Type == "":
		p.add("type", "", "required: one of "+refTypeList())
	default:
		p.add("type", refQuote(string(e.Type)), "must be one of "+refTypeList())
	}
	return errors.Join(p.errs...)
}

// refTypeChecks holds the rules of each type's own fields.
var refTypeChecks = map[Type]func(*problems, *Event){
	Listing:   refCheckListing,
	Delisting: func(*problems, *Event) {},
	StockSet:  func(p *problems, e *Event) { refCheckQty(p, "stock", e.Stock, 0) },
	SafetyStockSet: func(p *problems, e *Event) {
		refCheckQty(p, "qty", e.Qty, 0)
	},
	Restock: func(p *problems, e *Event) {
		refCheckQty(p, "qty", e.Qty, 1)
		refCheckID(p, "receipt_id", e.ReceiptID, false)
	},
	Sale: func(p *problems, e *Event) {
		refCheckID(p, "order_id", e.OrderID, true)
		refCheckQty(p, "qty", e.Qty, 1)
		refCheckPositive(p, "unit_price_fen", e.UnitPriceFen, MaxPriceFen)
		refCheckFreeID(p, "live_id", e.LiveID, false)
		refCheckID(p, "parent_order_id", e.ParentOrderID, false)
		refCheckOptionalTime(p, "ship_by", e.ShipBy)
	},
	Cancel:   func(p *problems, e *Event) { refCheckPart(p, e, "refund_id", e.RefundID, "a refund") },
	Shipment: func(p *problems, e *Event) { refCheckPart(p, e, "waybill", e.Waybill, "a package") },
	Return:   refCheckReturn,
	PromiseChanged: func(p *problems, e *Event) {
		refCheckID(p, "order_id", e.OrderID, true)
		if e.ShipBy == nil {
			p.add("ship_by", "", "required: the RFC 3339 time the platform now promises shipment by")
		} else {
			refCheckTime(p, "ship_by", *e.ShipBy)
		}
	},
	Recount: func(p *problems, e *Event) {
		refCheckQty(p, "counted", e.Counted, 0)
		refCheckText(p, "counted_by", e.CountedBy, false)
	},
	CapacityConfirmed: func(p *problems, e *Event) {
		refCheckFreeID(p, "supplier", e.Supplier, true)
		refCheckQty(p, "qty", e.Qty, 0)
		if e.DeliverBy == nil {
			p.add("deliver_by", "", "required: RFC 3339 time the supplier delivers by")
		} else {
			refCheckTime(p, "deliver_by", *e.DeliverBy)
		}
	},
}

func refCheckListing(p *problems, e *Event) {
	refCheckText(p, "title", e.Title, true)
	refCheckPositive(p, "price_fen", e.PriceFen, MaxPriceFen)
	refCheckQty(p, "stock", e.Stock, 0)
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
		p.add("sales_form", refQuote(string(e.SalesForm)), "must be spot or presale")
	}
}

// refCheckPart checks a cancel or shipment: the line, and a qty that comes with
// its document (docField) or not at all.
func refCheckPart(p *problems, e *Event, docField, doc, what string) {
	refCheckID(p, "order_id", e.OrderID, true)
	switch {
	case e.Qty != nil && doc == "":
		p.add(docField, "", fmt.Sprintf("required with qty: it names %s, so that a re-send is applied once (without qty, every open unit of the line)", what))
	case e.Qty == nil && doc != "":
		p.add("qty", "", fmt.Sprintf("required with %s: a whole number from 1 to %d", docField, MaxQty))
	}
	if e.Qty != nil {
		refCheckQty(p, "qty", e.Qty, 1)
	}
	refCheckID(p, docField, doc, false)
}

func refCheckReturn(p *problems, e *Event) {
	refCheckID(p, "order_id", e.OrderID, true)
	refCheckQty(p, "qty", e.Qty, 1)
	refCheckID(p, "return_id", e.ReturnID, true)
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

// refFieldsByType lists the type-specific fields each type takes.
var refFieldsByType = map[Type][]string{
	Listing:           {"title", "price_fen", "stock", "sales_form", "ship_within_hours", "ship_within_days"},
	StockSet:          {"stock"},
	SafetyStockSet:    {"qty"},
	Restock:           {"qty", "receipt_id"},
	Sale:              {"order_id", "qty", "unit_price_fen", "live_id", "parent_order_id", "ship_by"},
	Cancel:            {"order_id", "qty", "refund_id"},
	Shipment:          {"order_id", "qty", "waybill"},
	Return:            {"order_id", "qty", "return_id", "restocked"},
	PromiseChanged:    {"order_id", "ship_by"},
	Recount:           {"counted", "counted_by"},
	CapacityConfirmed: {"supplier", "qty", "deliver_by"},
}

func refPresentFields(e *Event) []string {
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
	add(e.ParentOrderID != "", "parent_order_id")
	add(e.UnitPriceFen != 0, "unit_price_fen")
	add(e.LiveID != "", "live_id")
	add(e.ShipBy != nil, "ship_by")
	add(e.Qty != nil, "qty")
	add(e.RefundID != "", "refund_id")
	add(e.Waybill != "", "waybill")
	add(e.ReturnID != "", "return_id")
	add(e.ReceiptID != "", "receipt_id")
	add(e.Restocked != nil, "restocked")
	add(e.Counted != nil, "counted")
	add(e.CountedBy != "", "counted_by")
	add(e.Supplier != "", "supplier")
	add(e.DeliverBy != nil, "deliver_by")
	return fs
}

func refTypeList() string {
	names := make([]string, len(Types))
	for i, t := range Types {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

func refCheckName(p *problems, field, v string) {
	switch {
	case v == "":
		p.add(field, "", "required")
	case !refNamePattern.MatchString(v):
		p.add(field, refQuote(v), fmt.Sprintf("must match ^[A-Za-z0-9_-]{1,%d}$ (it becomes a NATS subject token)", MaxNameLen))
	}
}

// refCheckID checks an id (order_id, refund_id, waybill, …): required or not,
// and the id pattern.
func refCheckID(p *problems, field, v string, required bool) {
	switch {
	case v == "" && required:
		p.add(field, "", "required")
	case v != "" && !refIdPattern.MatchString(v):
		p.add(field, refQuote(v), fmt.Sprintf("must match ^[A-Za-z0-9_.:-]{1,%d}$", MaxIDLen))
	}
}

// refCheckFreeID checks supplier and live_id: ids, or free text for a stored
// event (see ValidateStored).
func refCheckFreeID(p *problems, field, v string, required bool) {
	if p.ids == legacyIDs {
		refCheckText(p, field, v, required)
		return
	}
	refCheckID(p, field, v, required)
}

// refCheckOptionalTime checks a time field that may be absent.
func refCheckOptionalTime(p *problems, field string, t *time.Time) {
	if t != nil {
		refCheckTime(p, field, *t)
	}
}

func refCheckText(p *problems, field, v string, required bool) {
	switch {
	case v == "" && required:
		p.add(field, "", "required")
	case len(v) > MaxTextLen:
		p.add(field, refQuote(v), fmt.Sprintf("must be at most %d bytes", MaxTextLen))
	case !utf8.ValidString(v):
		p.add(field, refQuote(v), "must be valid UTF-8")
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		p.add(field, refQuote(v), "must not contain control characters")
	}
}

func refCheckPositive(p *problems, field string, v, max int64) {
	if v <= 0 || v > max {
		p.add(field, fmt.Sprint(v), fmt.Sprintf("must be from 1 to %d", max))
	}
}

func refCheckQty(p *problems, field string, v *int64, min int64) {
	switch {
	case v == nil:
		p.add(field, "", fmt.Sprintf("required: a whole number from %d to %d", min, MaxQty))
	case *v < min || *v > MaxQty:
		p.add(field, fmt.Sprint(*v), fmt.Sprintf("must be from %d to %d", min, MaxQty))
	}
}

func refCheckTime(p *problems, field string, t time.Time) {
	switch {
	case t.IsZero():
		p.add(field, "", "required: an RFC 3339 time")
	case t.Before(MinAt) || !t.Before(MaxAt):
		p.add(field, t.Format(time.RFC3339), fmt.Sprintf("must lie from %s to %s", MinAt.Format("2006-01-02"), MaxAt.Format("2006-01-02")))
	}
}

// refQuote shows a value in an error safely: control characters and invalid
// UTF-8 escaped, long values cut.
func refQuote(v string) string {
	const show = 80
	if len(v) > show {
		v = v[:show] + "…"
	}
	return fmt.Sprintf("%q", v)
}
