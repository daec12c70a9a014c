package consumers

import (
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger"
	"stockledger/ledger/transport"
)

// ownership says which shops' events a projector folds: every shop on an
// unpartitioned stream, else the shops of its partition.
type ownership struct {
	partitions int // the stream's partition count; below 2, unpartitioned
	part       int // the partition folded, with 2 or more
}

// owns reports whether shop's events belong to this projector's partition.
func (o ownership) owns(shop string) bool {
	return o.partitions < 2 || transport.Partition(shop, o.partitions) == o.part
}

// decoder turns delivered messages into events the projector may fold, or
// says why not. It holds only fixed settings, so that the batch loop's
// reader goroutine decodes beside the fold loop.
type decoder struct {
	own ownership
}

// decodedMsg is a delivered message with its metadata and its decoded event
// (or the reason it is refused), worked out by the reader goroutine. Ack and
// the rest go to the message itself.
type decodedMsg struct {
	jetstream.Msg
	meta    *jetstream.MsgMetadata
	metaErr error
	event   ledger.Event
	reason  string
}

// Metadata returns the metadata parsed once by the reader.
func (d *decodedMsg) Metadata() (*jetstream.MsgMetadata, error) { return d.meta, d.metaErr }

// predecode parses a delivered message's metadata and decodes its event.
func (dec decoder) predecode(m jetstream.Msg) jetstream.Msg {
	d := &decodedMsg{Msg: m}
	if d.meta, d.metaErr = m.Metadata(); d.metaErr == nil {
		d.event, d.reason = dec.decode(m, d.meta)
	}
	return d
}

// decodeOnce returns the event the reader decoded (not a copy: a batch
// holds thousands), or decodes it now for a message that did not come
// through the reader.
func (dec decoder) decodeOnce(m jetstream.Msg, meta *jetstream.MsgMetadata) (*ledger.Event, string) {
	if d, ok := m.(*decodedMsg); ok && d.metaErr == nil {
		return &d.event, d.reason
	}
	e, reason := dec.decode(m, meta)
	return &e, reason
}

// decode turns a message into a valid event for its subject, or says why not.
func (dec decoder) decode(m jetstream.Msg, meta *jetstream.MsgMetadata) (ledger.Event, string) {
	e, reason := decodeStored(m.Data(), m.Subject(), meta.Sequence.Stream, meta.Timestamp, dec.own.partitions)
	if reason == "" && !dec.own.owns(e.Shop) {
		return e, fmt.Sprintf("subject %q: shop %q is not in partition %d of %d", m.Subject(), e.Shop, dec.own.part, dec.own.partitions)
	}
	return e, reason
}

// decodeStored turns a stored message into a valid event for its stored
// subject (with partitions, stock.events.<partition>.<shop>.<sku>), or says
// why not. Used by the projector and by the as-of fold alike.
func decodeStored(data []byte, subject string, seq uint64, stored time.Time, partitions int) (ledger.Event, string) {
	e, err := ledger.DecodeEvent(data)
	if err != nil {
		return e, "decode: " + err.Error()
	}
	// A feed publishing straight onto NATS may leave out id and at: the id
	// is derived from the stream position, the time is the store time, so
	// that a rebuild gives the same values.
	if e.ID == "" {
		e.ID = uuid.NewSHA1(eventNamespace, strconv.AppendUint(nil, seq, 10)).String()
	}
	if e.At.IsZero() {
		e.At = stored.UTC()
	}
	if err := e.ValidateStored(); err != nil {
		return e, "validate: " + err.Error()
	}
	// The ingest clock of a raw publish is the store time: judged against
	// it, a rebuild refuses the same events.
	if err := e.CheckClock(stored); err != nil {
		return e, "validate: " + err.Error()
	}
	if subject != transport.StoredEventSubject(e.Shop, e.SKU, partitions) {
		return e, fmt.Sprintf("subject %q does not match the event's shop %q and sku %q", subject, e.Shop, e.SKU)
	}
	return e, ""
}

// eventNamespace is the UUID namespace of the ids derived from stream
// sequences (decodeStored): fixed, so that a rebuild derives the same ids.
var eventNamespace = uuid.MustParse("9e0d6b7c-51b4-4c55-8a3f-6d0e2f7a1b83")

// delivery is a message past the checkpoint, with its stream sequence and
// its decoded event, or the reason it is refused.
type delivery struct {
	msg    jetstream.Msg
	seq    uint64
	event  *ledger.Event // the decodedMsg's own; the fold does not change it
	reason string        // "" when event is valid for the message's subject
}
