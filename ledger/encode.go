package ledger

import (
	"encoding/json"
	"reflect"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendEvent appends the JSON of e to dst and returns the extended slice:
// byte for byte what json.Marshal(e) gives, members in the order of
// Event's fields, omitempty as its tags say, strings escaped as
// encoding/json escapes them (HTML-safe, U+2028 and U+2029 escaped, bytes
// that are not UTF-8 as \ufffd) and times as time.Time.MarshalJSON writes
// them. It writes the members itself, without reflection: the publisher
// encodes every event. A time that RFC 3339 cannot hold (a year outside
// [0,9999], a zone hour outside [0,23]) is the error json.Marshal returns,
// a *json.MarshalerError, and dst is returned as it came. A nil e appends
// null. It is safe for concurrent use.
func AppendEvent(dst []byte, e *Event) ([]byte, error) {
	if e == nil {
		return append(dst, "null"...), nil
	}
	out := appendString(append(dst, `{"id":`...), e.ID)
	out = appendString(append(out, `,"type":`...), string(e.Type))
	out = appendString(append(out, `,"shop":`...), e.Shop)
	out = appendString(append(out, `,"sku":`...), e.SKU)
	out, err := appendTime(append(out, `,"at":`...), e.At)
	if err != nil {
		return dst, &json.MarshalerError{Type: reflect.TypeFor[time.Time](), Err: err}
	}
	out = appendOptString(out, `,"title":`, e.Title)
	out = appendOptInt(out, `,"price_fen":`, e.PriceFen)
	out = appendOptString(out, `,"sales_form":`, string(e.SalesForm))
	out = appendOptInt(out, `,"ship_within_hours":`, int64(e.ShipWithinHours))
	out = appendOptInt(out, `,"ship_within_days":`, int64(e.ShipWithinDays))
	out = appendOptIntPtr(out, `,"stock":`, e.Stock)
	out = appendOptString(out, `,"order_id":`, e.OrderID)
	out = appendOptString(out, `,"parent_order_id":`, e.ParentOrderID)
	out = appendOptInt(out, `,"unit_price_fen":`, e.UnitPriceFen)
	out = appendOptString(out, `,"live_id":`, e.LiveID)
	if out, err = appendOptTimePtr(out, `,"ship_by":`, e.ShipBy); err != nil {
		return dst, err
	}
	out = appendOptIntPtr(out, `,"qty":`, e.Qty)
	out = appendOptString(out, `,"refund_id":`, e.RefundID)
	out = appendOptString(out, `,"waybill":`, e.Waybill)
	out = appendOptString(out, `,"return_id":`, e.ReturnID)
	out = appendOptString(out, `,"receipt_id":`, e.ReceiptID)
	out = appendOptIntPtr(out, `,"restocked":`, e.Restocked)
	out = appendOptIntPtr(out, `,"counted":`, e.Counted)
	out = appendOptString(out, `,"counted_by":`, e.CountedBy)
	out = appendOptString(out, `,"supplier":`, e.Supplier)
	if out, err = appendOptTimePtr(out, `,"deliver_by":`, e.DeliverBy); err != nil {
		return dst, err
	}
	return append(out, '}'), nil
}

// appendOptString appends the member key (with its comma and colon) and
// the string s, or nothing when s is empty (omitempty).
func appendOptString(dst []byte, key, s string) []byte {
	if s == "" {
		return dst
	}
	return appendString(append(dst, key...), s)
}

// appendOptInt appends the member key and n, or nothing when n is 0.
func appendOptInt(dst []byte, key string, n int64) []byte {
	if n == 0 {
		return dst
	}
	return strconv.AppendInt(append(dst, key...), n, 10)
}

// appendOptIntPtr appends the member key and *p, or nothing when p is nil:
// omitempty keeps a pointer to 0.
func appendOptIntPtr(dst []byte, key string, p *int64) []byte {
	if p == nil {
		return dst
	}
	return strconv.AppendInt(append(dst, key...), *p, 10)
}

// appendOptTimePtr appends the member key and *p, or nothing when p is nil.
// Its error is json.Marshal's for a *time.Time field.
func appendOptTimePtr(dst []byte, key string, p *time.Time) ([]byte, error) {
	if p == nil {
		return dst, nil
	}
	out, err := appendTime(append(dst, key...), *p)
	if err != nil {
		return dst, &json.MarshalerError{Type: reflect.TypeFor[*time.Time](), Err: err}
	}
	return out, nil
}

// appendTime appends t quoted, as time.Time.MarshalJSON writes it: RFC 3339
// with the nanoseconds' trailing zeros trimmed. When the text is one
// MarshalJSON would refuse, it returns MarshalJSON's error, so that the
// words are time's own.
func appendTime(dst []byte, t time.Time) ([]byte, error) {
	out := t.AppendFormat(append(dst, '"'), time.RFC3339Nano)
	if !strictRFC3339(out[len(dst)+1:]) {
		if _, err := t.MarshalJSON(); err != nil {
			return dst, err
		}
	}
	return append(out, '"'), nil
}

// strictRFC3339 reports whether b, a time formatted as time.RFC3339Nano,
// is one time.Time.MarshalJSON accepts: its year exactly four digits, and
// its zone Z or an offset whose hour is below 24. The checks and their
// byte arithmetic are MarshalJSON's (time/format_rfc3339.go).
func strictRFC3339(b []byte) bool {
	if len(b) < len("9999-") || b[len("9999")] != '-' {
		return false
	}
	if b[len(b)-1] == 'Z' {
		return true
	}
	c := b[len(b)-len("Z07:00")]
	h := b[len(b)-len("07:00"):]
	return (c < '0' || '9' < c) && 10*(h[0]-'0')+(h[1]-'0') < 24
}

// escapeLow and escapeHigh have bit c%64 set for each ASCII byte c that
// appendString escapes, escapeLow for the bytes 0-63, escapeHigh for 64-127.
const (
	escapeLow  uint64 = 1<<' ' - 1 | 1<<'"' | 1<<'&' | 1<<'<' | 1<<'>'
	escapeHigh uint64 = 1 << ('\\' - 64)
)

// escapeASCII is 1 when appendString escapes the ASCII byte c, else 0.
func escapeASCII(c byte) uint64 {
	m := escapeLow
	if c >= 64 {
		m = escapeHigh
	}
	return m >> (c & 63) & 1
}

// hexDigits are the digits of a \u escape, lower case as encoding/json
// writes them.
const hexDigits = "0123456789abcdef"

// appendString appends s quoted as encoding/json quotes a string: ", \
// and the control characters escaped (\b \f \n \r \t by name, the others
// as \u00XX), <, > and & as \u003c, \u003e and \u0026, U+2028 and U+2029
// as \u2028 and \u2029, and each byte that does not start a valid UTF-8
// sequence as \ufffd. Other bytes are copied in runs.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if escapeASCII(c) == 0 {
				i++
				continue
			}
			dst = appendEscapedASCII(append(dst, s[start:i]...), c)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(append(dst, s[start:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(append(dst, s[start:i]...), `\u202`...)
			dst = append(dst, hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendEscapedASCII appends the escape encoding/json writes for the ASCII
// byte c, one appendString does not copy as it is.
func appendEscapedASCII(dst []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(dst, '\\', c)
	case '\b':
		return append(dst, '\\', 'b')
	case '\f':
		return append(dst, '\\', 'f')
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	return append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
}
