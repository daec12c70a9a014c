package ledger

import (
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// maxNesting is encoding/json's bound on nesting: a deeper value is a
// syntax error there, and so here.
const maxNesting = 10000

// valueKind is the JSON kind of a value the reader has read.
type valueKind uint8

const (
	kindString valueKind = iota
	kindNumber
	kindBool
	kindNull
	kindObject
	kindArray
)

// typeName is the kind as encoding/json names it in an UnmarshalTypeError.
func (k valueKind) typeName() string {
	return [...]string{"string", "number", "bool", "null", "object", "array"}[k]
}

// reader checks JSON syntax byte by byte exactly as encoding/json's scanner
// does, so that a malformed body is refused with the same words at the same
// byte: the first problem stops it (failed), at the byte errAt with
// encoding/json's context, or at the end of the input (eof). It allocates
// nothing.
type reader struct {
	data   []byte
	i      int
	depth  int  // nesting of the value being read
	high   bool // a string read held a byte beyond ASCII
	esc    bool // the last string read held an escape
	failed bool
	eof    bool
	errAt  int
	errCtx string
}

// fail records the problem at the current byte (or the end of the input).
func (r *reader) fail(ctx string) {
	if r.failed {
		return
	}
	r.failed = true
	if r.i >= len(r.data) {
		r.eof = true
		return
	}
	r.errAt, r.errCtx = r.i, ctx
}

// message is encoding/json's SyntaxError text for the recorded problem.
func (r *reader) message() string {
	return "invalid character " + quoteChar(r.data[r.errAt]) + " " + r.errCtx
}

// quoteChar formats c as encoding/json does in its syntax errors.
func quoteChar(c byte) string {
	switch c {
	case '\'':
		return `'\''`
	case '"':
		return `'"'`
	}
	s := strconv.Quote(string(rune(c)))
	return "'" + s[1:len(s)-1] + "'"
}

func (r *reader) peek() byte {
	if r.i < len(r.data) {
		return r.data[r.i]
	}
	return 0
}

func (r *reader) space() {
	for r.i < len(r.data) {
		switch r.data[r.i] {
		case ' ', '\t', '\r', '\n':
			r.i++
		default:
			return
		}
	}
}

// value reads one value after optional white space and returns its kind;
// on a problem it returns with r.failed set.
func (r *reader) value() valueKind {
	r.space()
	switch c := r.peek(); {
	case c == '"':
		r.str()
		return kindString
	case c == '{' || c == '[':
		return r.nested(c)
	case c == '-' || c >= '0' && c <= '9':
		r.number()
		return kindNumber
	case c == 't':
		r.literal("true")
		return kindBool
	case c == 'f':
		r.literal("false")
		return kindBool
	case c == 'n':
		r.literal("null")
		return kindNull
	}
	r.fail("looking for beginning of value")
	return kindNull
}

// nested reads an object or array whose opening byte is c.
func (r *reader) nested(c byte) valueKind {
	if r.depth++; r.depth > maxNesting {
		r.fail("exceeded max depth")
		return kindNull
	}
	r.i++
	kind := kindObject
	if c == '[' {
		kind = kindArray
		r.array()
	} else {
		r.object(nil)
	}
	r.depth--
	return kind
}

func (r *reader) array() {
	r.space()
	if r.peek() == ']' {
		r.i++
		return
	}
	for {
		if r.value(); r.failed {
			return
		}
		r.space()
		switch r.peek() {
		case ',':
			r.i++
		case ']':
			r.i++
			return
		default:
			r.fail("after array element")
			return
		}
	}
}

// object reads the members of an object after its '{'. member, when not
// nil, reads each value (the reader is at its first byte, after white
// space) and is given the key's span, quotes included; else values are
// read and dropped.
func (r *reader) object(member func(key []byte)) {
	r.space()
	if r.peek() == '}' {
		r.i++
		return
	}
	for {
		if r.space(); r.peek() != '"' {
			r.fail("looking for beginning of object key string")
			return
		}
		start := r.i
		if r.str(); r.failed {
			return
		}
		key := r.data[start:r.i]
		if r.space(); r.peek() != ':' {
			r.fail("after object key")
			return
		}
		r.i++
		if member != nil {
			r.space()
			member(key)
		} else {
			r.value()
		}
		if r.failed {
			return
		}
		if r.space(); !r.endMember() {
			return
		}
	}
}

// endMember reads the ',' or '}' after a member and reports whether
// another member follows.
func (r *reader) endMember() bool {
	switch r.peek() {
	case ',':
		r.i++
		return true
	case '}':
		r.i++
	default:
		r.fail("after object key:value pair")
	}
	return false
}

// str reads a string from its opening quote, noting in r.esc and r.high
// whether it holds escapes or bytes beyond ASCII.
func (r *reader) str() {
	r.esc = false
	for r.i++; r.i < len(r.data); r.i++ {
		switch c := r.data[r.i]; {
		case c == '"':
			r.i++
			return
		case c == '\\':
			r.esc = true
			if !r.escape() {
				return
			}
		case c < 0x20:
			r.fail("in string literal")
			return
		case c >= utf8.RuneSelf:
			r.high = true
		}
	}
	r.fail("")
}

// escape reads the escape whose backslash is at r.i, leaving r.i at its
// last byte.
func (r *reader) escape() bool {
	r.i++
	switch r.peek() {
	case 'b', 'f', 'n', 'r', 't', '\\', '/', '"':
		return true
	case 'u':
		for range 4 {
			r.i++
			if !isHex(r.peek()) {
				r.fail(`in \u hexadecimal character escape`)
				return false
			}
		}
		return true
	}
	r.fail("in string escape code")
	return false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func (r *reader) digits() {
	for r.i < len(r.data) && r.data[r.i] >= '0' && r.data[r.i] <= '9' {
		r.i++
	}
}

// number reads a number as encoding/json's scanner does; what follows it
// is for the caller to judge.
func (r *reader) number() {
	if r.peek() == '-' {
		r.i++
	}
	switch c := r.peek(); {
	case c == '0':
		r.i++
	case c >= '1' && c <= '9':
		r.digits()
	default:
		r.fail("in numeric literal")
		return
	}
	if r.peek() == '.' {
		r.i++
		if c := r.peek(); c < '0' || c > '9' {
			r.fail("after decimal point in numeric literal")
			return
		}
		r.digits()
	}
	if c := r.peek(); c == 'e' || c == 'E' {
		r.i++
		if c := r.peek(); c == '+' || c == '-' {
			r.i++
		}
		if c := r.peek(); c < '0' || c > '9' {
			r.fail("in exponent of numeric literal")
			return
		}
		r.digits()
	}
}

// literal reads true, false or null.
func (r *reader) literal(word string) {
	for k := 1; k < len(word); k++ {
		r.i++
		if r.peek() != word[k] {
			r.fail("in literal " + word + " (expecting " + quoteChar(word[k]) + ")")
			return
		}
	}
	r.i++
}

// appendUnquoted appends the text of the JSON string raw (quotes included,
// already read by the reader) to dst as encoding/json unquotes it:
// escapes resolved, a lone surrogate and each byte that is not UTF-8 as
// U+FFFD.
func appendUnquoted(dst, raw []byte) []byte {
	s := raw[1 : len(raw)-1]
	for r := 0; r < len(s); {
		switch c := s[r]; {
		case c == '\\' && s[r+1] == 'u':
			rr := getu4(s[r:])
			r += 6
			if utf16.IsSurrogate(rr) {
				if dec := utf16.DecodeRune(rr, getu4(s[r:])); dec != unicode.ReplacementChar {
					rr = dec
					r += 6
				} else {
					rr = unicode.ReplacementChar
				}
			}
			dst = utf8.AppendRune(dst, rr)
		case c == '\\':
			dst = append(dst, unescape(s[r+1]))
			r += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			dst = utf8.AppendRune(dst, rr)
			r += size
		}
	}
	return dst
}

// unescape is the byte a one-letter escape stands for.
func unescape(c byte) byte {
	switch c {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	}
	return c // '"', '\\', '/'
}

// getu4 decodes the \uXXXX escape at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		default:
			c = c - 'A' + 10
		}
		r = r*16 + rune(c)
	}
	return r
}

// unquote returns the text of raw, the bytes of a JSON string with its
// quotes, and false when raw is not exactly one valid JSON string.
func unquote(raw []byte) (string, bool) {
	r := reader{data: raw}
	if r.peek() != '"' {
		return "", false
	}
	if r.str(); r.failed || r.i != len(raw) {
		return "", false
	}
	return string(appendUnquoted(nil, raw)), true
}
