package ledger

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxJSONDepth bounds the nesting of an event's JSON. An event is a flat
// object whose values are scalars; the bound leaves room for the type errors
// to name a field that holds an object or array, and refuses deep nesting
// early.
const MaxJSONDepth = 4

// scanObject checks what encoding/json let through silently: a key given
// twice (encoding/json kept the last, and it matches keys case-insensitively,
// so "qty" and "QTY" are the same field to it), bytes that are not UTF-8 (it
// replaced them with U+FFFD), and nesting deeper than MaxJSONDepth. It
// returns nil for anything that is not a JSON object, or is malformed: the
// decoder reports those. DecodeEvent finds these problems as it reads, and
// calls scanObject only to word a problem as the decoder before it did:
// this loose scan stops where it stopped, so it ranks problems the same.
func scanObject(data []byte) *FieldError {
	s := scanner{data: data}
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
		key, ok := plainKey(raw)
		if !ok {
			if key, ok = unquote(raw); !ok {
				return nil
			}
		}
		if !utf8.Valid(raw) {
			return &FieldError{Field: "body", Value: quote(string(raw)), Rule: "a field name must be valid UTF-8"}
		}
		folded := foldKey(key)
		if first, dup := seen[folded]; dup {
			rule := "given twice: each field at most once"
			if first != key {
				rule = fmt.Sprintf("given twice (as %q and %q; field names match case-insensitively): each field at most once", first, key)
			}
			return &FieldError{Field: fieldLabel(strings.ToLower(key)), Rule: rule}
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
			return &FieldError{Field: fieldLabel(key), Rule: fmt.Sprintf("nested %d levels deep: at most %d", depth, MaxJSONDepth)}
		}
		if v := data[start:s.i]; !utf8.Valid(v) {
			return &FieldError{Field: fieldLabel(key), Value: quote(strings.Trim(string(v), `"`)), Rule: "must be valid UTF-8"}
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

// plainKey returns the key a quoted JSON string holds when it is printable
// ASCII without escapes, as every key of a well-formed event is: then it is
// the bytes between the quotes. Other keys go through unquote.
func plainKey(raw []byte) (string, bool) {
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c < 0x20 || c >= 0x80 || c == '\\' {
			return "", false
		}
	}
	return string(inner), true
}

// fieldLabel names a field in an error; an empty name shows as "".
func fieldLabel(key string) string {
	if key == "" {
		return `""`
	}
	return key
}

// foldKey maps a key to the same string for every key bytes.EqualFold (and
// so encoding/json) takes as equal: each rune to the smallest of its simple
// case-folding orbit.
func foldKey(k string) string {
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
	return foldRunes(k)
}

// foldRunes is foldKey rune by rune, for any key.
func foldRunes(k string) string {
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

type scanner struct {
	data []byte
	i    int
}

func (s *scanner) peek() byte {
	if s.i < len(s.data) {
		return s.data[s.i]
	}
	return 0
}

func (s *scanner) space() {
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
func (s *scanner) str() ([]byte, bool) {
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
func (s *scanner) value(depth int) (int, bool) {
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
