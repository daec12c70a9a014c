package ledger

import (
	"bytes"
	"fmt"
)

// MaxBatch bounds the events of one batch (one HTTP request, one Publish call).
const MaxBatch = 1000

// MaxEventBytes bounds one encoded event; the stream refuses larger messages.
const MaxEventBytes = 8 << 10

// DecodeEvent decodes one event strictly: an unknown field, a field given
// twice (case-insensitively), bytes that are not UTF-8, nesting deeper than
// MaxJSONDepth, a value of the wrong JSON type or trailing data is an error
// naming the field. It does not validate the rules; call Validate.
//
// It reads the bytes once, without reflection, and accepts and refuses
// exactly what the encoding/json decoder it replaces did, with the same
// words: field names match case-insensitively (as encoding/json matched
// them), and when several things are wrong the one reported is the one
// that decoder reported. A valid event costs at most two allocations: one
// for the text of all its strings, one for its optional numbers and times.
// The strings of an event share that text: one kept for long (a map key)
// keeps the whole text, about 100 bytes, alive; strings.Clone it if that
// matters. It is safe for concurrent use.
func DecodeEvent(data []byte) (Event, error) {
	if len(data) > MaxEventBytes {
		return Event{}, sizeError(len(data))
	}
	d := eventDecoder{r: reader{data: data}}
	d.decode()
	if d.clean() && !d.trailing() {
		return d.finish(), nil
	}
	if err := d.explain(); err != nil {
		return Event{}, err
	}
	return d.finish(), nil
}

// trailing reports whether anything but white space follows the value.
func (d *eventDecoder) trailing() bool {
	r := reader{data: d.r.data, i: d.r.i}
	r.space()
	return r.i < len(r.data)
}

// explain words the problem of a value that did not decode cleanly, ranked
// as the decoder before did: a duplicate, nesting or UTF-8 problem found
// by scanObject; then malformed JSON; then a time that does not parse;
// then the first unknown member or value of the wrong type; then trailing
// data. It returns nil when there is none.
func (d *eventDecoder) explain() *FieldError {
	if fe := scanObject(d.r.data); fe != nil {
		return fe
	}
	if r := &d.r; r.failed {
		if r.eof {
			return &FieldError{Field: "body", Rule: "malformed JSON: unexpected end of input"}
		}
		return &FieldError{Field: "body", Rule: fmt.Sprintf("malformed JSON at byte %d: %s", r.errAt+1, r.message())}
	}
	if d.abort != nil {
		if fe := d.badTime(); fe != nil {
			return fe
		}
		return timeError(d.abort)
	}
	if d.first.set {
		return d.first.err()
	}
	if d.trailing() {
		return &FieldError{Field: "body", Rule: "must hold one JSON object and nothing after it"}
	}
	return nil
}

// badTime names the first time member, in the order at, deliver_by,
// ship_by, that does not parse, when the body is one object and nothing
// else: the decoder before looked for it so, as encoding/json does not name
// the member of a time that failed.
func (d *eventDecoder) badTime() *FieldError {
	if !d.object || d.trailing() {
		return nil
	}
	for slot, f := range timeSlots {
		if raw := d.badTimes[slot]; raw != nil {
			return &FieldError{Field: eventFields[f].name, Value: quote(string(raw)), Rule: timeRule}
		}
	}
	return nil
}

// DecodeEvents decodes a request body holding one event object or an array of
// at most MaxBatch events, strictly as DecodeEvent does. Each event is read
// once; a problem is worded, and its byte counted, as the encoding/json
// decoder before it did.
func DecodeEvents(data []byte) ([]Event, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, &FieldError{Field: "body", Rule: "required: one event object or an array of events"}
	}
	if trimmed[0] != '[' {
		e, err := DecodeEvent(data)
		if err != nil {
			return nil, err
		}
		return []Event{e}, nil
	}
	// Most events take more than 128 bytes: room for them all, mostly.
	b := batchReader{data: trimmed, i: 1, events: make([]Event, 0, min(MaxBatch, len(trimmed)/128+1))}
	for i := 0; ; i++ {
		c, ok := b.peek()
		if !ok || c == ']' || c == '}' {
			break
		}
		if i == MaxBatch {
			return nil, &FieldError{Field: "body", Value: fmt.Sprintf("more than %d events", MaxBatch), Rule: fmt.Sprintf("a batch holds at most %d events", MaxBatch)}
		}
		if err := b.next(i); err != nil {
			return nil, err
		}
	}
	if err := b.end(); err != nil {
		return nil, err
	}
	return b.events, nil
}

// EncodeEvent encodes an event as the JSON stored on the stream: the bytes
// json.Marshal(e) gives, written by AppendEvent. Its error names the event;
// it wraps a *json.MarshalerError for a time RFC 3339 cannot hold. It is
// safe for concurrent use.
func EncodeEvent(e *Event) ([]byte, error) {
	// Most events fit encodeBufBytes: encoded on the stack, they cost one
	// allocation, of their own size.
	var buf [encodeBufBytes]byte
	data, err := AppendEvent(buf[:0], e)
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	return bytes.Clone(data), nil
}

// encodeBufBytes is the stack buffer EncodeEvent encodes into; a larger
// event grows onto the heap.
const encodeBufBytes = 512
