package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// MaxBatch bounds the events of one batch (one HTTP request, one Publish call).
const MaxBatch = 1000

// MaxEventBytes bounds one encoded event; the stream refuses larger messages.
const MaxEventBytes = 8 << 10

// DecodeEvent decodes one event strictly: an unknown field, a field given
// twice (case-insensitively), bytes that are not UTF-8, nesting deeper than
// MaxJSONDepth, a value of the wrong JSON type or trailing data is an error
// naming the field. It does not validate the rules; call Validate.
func DecodeEvent(data []byte) (Event, error) {
	var e Event
	if len(data) > MaxEventBytes {
		return e, &FieldError{Field: "body", Value: fmt.Sprintf("%d bytes", len(data)), Rule: fmt.Sprintf("an event must be at most %d bytes", MaxEventBytes)}
	}
	if fe := scanObject(data); fe != nil {
		return e, fe
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		if fe := badTime(data); fe != nil {
			return e, fe
		}
		return e, jsonError(0, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return e, &FieldError{Field: "body", Rule: "must hold one JSON object and nothing after it"}
	}
	return e, nil
}

// DecodeEvents decodes a request body holding one event object or an array of
// at most MaxBatch events, strictly as DecodeEvent does.
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
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if _, err := dec.Token(); err != nil {
		return nil, jsonError(0, err)
	}
	var events []Event
	for i := 0; dec.More(); i++ {
		if i == MaxBatch {
			return nil, &FieldError{Field: "body", Value: fmt.Sprintf("more than %d events", MaxBatch), Rule: fmt.Sprintf("a batch holds at most %d events", MaxBatch)}
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, jsonError(i, err)
		}
		e, err := DecodeEvent(raw)
		if err != nil {
			for _, fe := range FieldErrors(err) {
				fe.Index = i
			}
			return nil, err
		}
		events = append(events, e)
	}
	if _, err := dec.Token(); err != nil {
		return nil, jsonError(len(events), err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &FieldError{Field: "body", Rule: "must hold one JSON array and nothing after it"}
	}
	if len(events) == 0 {
		return nil, &FieldError{Field: "body", Value: "[]", Rule: "a batch holds at least one event"}
	}
	return events, nil
}

// EncodeEvent encodes an event as the JSON stored on the stream.
func EncodeEvent(e *Event) ([]byte, error) {
	data, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	return data, nil
}

// jsonError turns a decoding error into a FieldError naming the field where
// encoding/json tells it.
func jsonError(index int, err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	var timeErr *time.ParseError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		return &FieldError{Index: index, Field: field, Value: typeErr.Value, Rule: "must be a JSON " + jsonKind(typeErr.Type.String())}
	case errors.As(err, &syntaxErr):
		return &FieldError{Index: index, Field: "body", Rule: fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)}
	case errors.As(err, &timeErr):
		return &FieldError{Index: index, Field: "at", Value: quote(timeErr.Value), Rule: "must be an RFC 3339 time such as 2026-11-26T20:00:00+08:00"}
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

// badTime finds a time field that does not hold an RFC 3339 string:
// encoding/json does not name the field of a time.Time that failed.
func badTime(data []byte) *FieldError {
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
			return &FieldError{Field: f.name, Value: quote(string(f.raw)), Rule: "must be an RFC 3339 time such as 2026-11-26T20:00:00+08:00"}
		}
	}
	return nil
}

func jsonKind(goType string) string {
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
