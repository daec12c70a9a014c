package ledger

import "fmt"

// batchReader reads the events of an array body one by one, wording every
// problem, and counting its byte, as the encoding/json Decoder (Token, More
// and Decode into json.RawMessage) did before it.
type batchReader struct {
	data    []byte // the body from its '['
	i       int
	scanned int64 // bytes encoding/json's scanner counted: each event's, with the white space before it
	events  []Event
}

// peek skips white space and returns the next byte, or false at the end.
func (b *batchReader) peek() (byte, bool) {
	for ; b.i < len(b.data); b.i++ {
		switch b.data[b.i] {
		case ' ', '\t', '\r', '\n':
		default:
			return b.data[b.i], true
		}
	}
	return 0, false
}

// next reads event i, which starts at b.i (after a comma for all but the
// first event).
func (b *batchReader) next(i int) error {
	start := b.i
	if i > 0 {
		if b.data[b.i] != ',' {
			return &FieldError{Index: i, Field: "body", Rule: fmt.Sprintf("malformed JSON at byte %d: expected comma after array element", b.i)}
		}
		start++
	}
	elem := b.data[start:]
	d := eventDecoder{r: reader{data: elem}}
	d.decode()
	if d.clean() && d.r.i-d.start <= MaxEventBytes {
		b.events = append(b.events, d.finish())
		b.advance(start, d.r.i)
		return nil
	}
	return b.explain(i, start)
}

func (b *batchReader) advance(start, n int) {
	b.scanned += int64(n)
	b.i = start + n
}

// explain reads event i again as the decoder before did: the syntax of
// the whole value first, then the event alone with DecodeEvent.
func (b *batchReader) explain(i, start int) error {
	r := reader{data: b.data[start:]}
	r.space()
	from := r.i
	if r.value(); r.failed {
		if r.eof {
			return &FieldError{Index: i, Field: "body", Rule: "malformed JSON: unexpected end of input"}
		}
		return &FieldError{Index: i, Field: "body", Rule: fmt.Sprintf("malformed JSON at byte %d: %s", b.scanned+int64(r.errAt)+1, r.message())}
	}
	e, err := DecodeEvent(r.data[from:r.i])
	if err != nil {
		for _, fe := range FieldErrors(err) {
			fe.Index = i
		}
		return err
	}
	b.events = append(b.events, e)
	b.advance(start, r.i)
	return nil
}

// end reads the closing ']' and checks that nothing follows it.
func (b *batchReader) end() error {
	n := len(b.events)
	c, ok := b.peek()
	switch {
	case !ok:
		return &FieldError{Index: n, Field: "body", Rule: "malformed JSON: unexpected end of input"}
	case c == '}':
		context := "after array element"
		if n == 0 {
			context = "looking for beginning of value"
		}
		return &FieldError{Index: n, Field: "body", Rule: fmt.Sprintf("malformed JSON at byte %d: invalid character '}' %s", b.i, context)}
	}
	b.i++
	if _, ok := b.peek(); ok {
		return &FieldError{Field: "body", Rule: "must hold one JSON array and nothing after it"}
	}
	if n == 0 {
		return &FieldError{Field: "body", Value: "[]", Rule: "a batch holds at least one event"}
	}
	return nil
}
