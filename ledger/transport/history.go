package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// History bounds.
const (
	// historyPageMax bounds the messages one direct batch get returns.
	historyPageMax = 1000
	// historyPageBytesMax bounds the bytes of one page: a page of
	// MaxEventBytes events stays under NATS' default 1 MiB payload times a
	// few, and the server stops a batch at this size.
	historyPageBytesMax = 4 << 20
	// historyRetriesMax bounds the pages asked again when a replica
	// answered short of the sequence the stream leader named (it lags).
	historyRetriesMax = 5
	// refusalsMax bounds the dead letters read for one SKU's history.
	refusalsMax = 10_000
	// leaderRequestTimeout bounds one request to a stream leader
	// (LastSeqFromLeader) when the caller's context allows longer: while
	// the stream elects a leader nobody answers, and the caller hears so
	// after this rather than never.
	leaderRequestTimeout = 2 * time.Second
)

// StoredEvent is one message of the event stream as stored: its stream
// sequence, stored subject, store time and body (the event JSON, or whatever
// a raw publisher sent).
type StoredEvent struct {
	Seq      uint64
	Subject  string
	StoredAt time.Time
	Data     []byte
}

// History reads one SKU's messages from the event stream: the command path's
// last-sequence check, the HTTP history and as-of reads use it. It reads with
// direct batch gets (the streams allow direct access): a request and its
// answers, no consumer to create, so that a finished range reads the same on
// one server and on a quiet cluster. It is safe for concurrent use.
type History struct {
	js jetstream.JetStream

	mu         sync.Mutex
	partitions int // of the event stream; 0 until read
}

// NewHistory returns a reader of the event stream over js.
func NewHistory(js jetstream.JetStream) *History { return &History{js: js} }

// ErrNoEvents is returned by reads of a SKU the stream holds no message of.
var ErrNoEvents = errors.New("no events")

// Partitions returns the event stream's partition count, read once: it is
// fixed for the life of the stream.
func (h *History) Partitions(ctx context.Context) (int, error) {
	h.mu.Lock()
	n := h.partitions
	h.mu.Unlock()
	if n > 0 {
		return n, nil
	}
	st, err := h.js.Stream(ctx, EventStream)
	if err != nil {
		return 0, fmt.Errorf("look up stream %s: %w", EventStream, err)
	}
	n = EventPartitions(st.CachedInfo().Config)
	h.mu.Lock()
	h.partitions = n
	h.mu.Unlock()
	return n, nil
}

// Subject returns the subject a SKU's events are stored under.
func (h *History) Subject(ctx context.Context, shop, sku string) (string, error) {
	n, err := h.Partitions(ctx)
	if err != nil {
		return "", err
	}
	return StoredEventSubject(shop, sku, n), nil
}

// LastSeq returns the stream sequence of the SKU's last message, 0 when the
// stream holds none. It asks the stream leader, not any replica: a replica
// that lags would name an older sequence.
func (h *History) LastSeq(ctx context.Context, shop, sku string) (uint64, error) {
	subject, err := h.Subject(ctx, shop, sku)
	if err != nil {
		return 0, err
	}
	return LastSeqFromLeader(ctx, h.js.Conn(), EventStream, subject)
}

// Read returns the SKU's messages after stream sequence afterSeq, in stream
// order, at most limit of them, and whether the stream holds more. It
// returns ErrNoEvents when the stream holds no message of the SKU.
func (h *History) Read(ctx context.Context, shop, sku string, afterSeq uint64, limit int) ([]StoredEvent, bool, error) {
	subject, err := h.Subject(ctx, shop, sku)
	if err != nil {
		return nil, false, err
	}
	last, err := LastSeqFromLeader(ctx, h.js.Conn(), EventStream, subject)
	if err != nil {
		return nil, false, err
	}
	if last == 0 {
		return nil, false, fmt.Errorf("%s: %w", subject, ErrNoEvents)
	}
	var out []StoredEvent
	err = readRange(ctx, h.js, EventStream, subject, afterSeq+1, last, limit, func(m *jetstream.RawStreamMsg) error {
		out = append(out, storedEvent(m))
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	more := len(out) == limit && out[len(out)-1].Seq < last
	return out, more, nil
}

// Each calls fn for every message of the SKU up to the last one the stream
// held when Each began, in stream order, at most max of them; more is an
// error wrapping ErrHistoryTooLong. It returns ErrNoEvents when the stream
// holds no message of the SKU.
func (h *History) Each(ctx context.Context, shop, sku string, max int, fn func(StoredEvent) error) error {
	subject, err := h.Subject(ctx, shop, sku)
	if err != nil {
		return err
	}
	last, err := LastSeqFromLeader(ctx, h.js.Conn(), EventStream, subject)
	if err != nil {
		return err
	}
	if last == 0 {
		return fmt.Errorf("%s: %w", subject, ErrNoEvents)
	}
	n := 0
	err = readRange(ctx, h.js, EventStream, subject, 1, last, max+1, func(m *jetstream.RawStreamMsg) error {
		if n++; n > max {
			return fmt.Errorf("%s has more than %d events: %w", subject, max, ErrHistoryTooLong)
		}
		return fn(storedEvent(m))
	})
	return err
}

// ErrHistoryTooLong is returned by Each for a SKU with more messages than it
// was allowed to read.
var ErrHistoryTooLong = errors.New("history too long")

// Refusals returns why the projector refused messages of the SKU, by stream
// sequence: the reasons its dead letters carry (see DeadSubject). A SKU with
// none gives an empty map.
func (h *History) Refusals(ctx context.Context, shop, sku string) (map[uint64]string, error) {
	subject, err := h.Subject(ctx, shop, sku)
	if err != nil {
		return nil, err
	}
	dead := DeadSubject(subject)
	last, err := LastSeqFromLeader(ctx, h.js.Conn(), DeadStream, dead)
	if err != nil || last == 0 {
		return map[uint64]string{}, err
	}
	out := make(map[uint64]string)
	err = readRange(ctx, h.js, DeadStream, dead, 1, last, refusalsMax, func(m *jetstream.RawStreamMsg) error {
		if seq, err := strconv.ParseUint(m.Header.Get(HeaderDeadSeq), 10, 64); err == nil {
			out[seq] = m.Header.Get(HeaderDeadReason)
		}
		return nil
	})
	return out, err
}

// readRange reads the messages of subject in stream from sequence from up to
// last, at most limit, page by page with direct batch gets, and calls fn for
// each. A page that ends
// short of last while the stream said more was pending came from a replica
// that lags: it is asked again, at most historyRetriesMax times in a row.
func readRange(ctx context.Context, js jetstream.JetStream, stream, subject string, from, last uint64, limit int, fn func(*jetstream.RawStreamMsg) error) error {
	read, short := 0, 0
	for from <= last && read < limit {
		page := min(historyPageMax, limit-read)
		msgs, err := jetstreamext.GetBatch(ctx, js, stream, page,
			jetstreamext.GetBatchSeq(from), jetstreamext.GetBatchSubject(subject), jetstreamext.GetBatchMaxBytes(historyPageBytesMax))
		if err != nil {
			return fmt.Errorf("read %s of %s from seq %d: %w", subject, stream, from, err)
		}
		got := 0
		for m, err := range msgs {
			if errors.Is(err, jetstreamext.ErrNoMessages) {
				break
			}
			if err != nil {
				return fmt.Errorf("read %s of %s from seq %d: %w", subject, stream, from, err)
			}
			if m.Sequence > last {
				return nil
			}
			if err := fn(m); err != nil {
				return err
			}
			got++
			read++
			from = m.Sequence + 1
		}
		if got > 0 {
			short = 0
			continue
		}
		if short++; short > historyRetriesMax {
			return fmt.Errorf("read %s of %s: no message from seq %d although the leader's last is %d (a replica lags)", subject, stream, from, last)
		}
	}
	return nil
}

func storedEvent(m *jetstream.RawStreamMsg) StoredEvent {
	return StoredEvent{Seq: m.Sequence, Subject: m.Subject, StoredAt: m.Time.UTC(), Data: m.Data}
}

// LastSeqFromLeader returns the stream sequence of the last message on
// subject (wildcards allowed) in stream, 0 when there is none. It asks the
// stream leader ($JS.API.STREAM.MSG.GET) rather than a direct get, which any
// replica answers: a replica that lags would report an older sequence. It
// waits at most 2 s (less when ctx ends sooner) for the answer.
func LastSeqFromLeader(ctx context.Context, nc *nats.Conn, stream, subject string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, leaderRequestTimeout)
	defer cancel()
	req, err := json.Marshal(map[string]string{"last_by_subj": subject})
	if err != nil {
		return 0, err
	}
	m, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, req)
	if err != nil {
		return 0, fmt.Errorf("last message of %s in %s: %w", subject, stream, err)
	}
	var resp struct {
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return 0, fmt.Errorf("last message of %s in %s: %w", subject, stream, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return 0, nil
	case resp.Error != nil:
		return 0, fmt.Errorf("last message of %s in %s: %w", subject, stream, resp.Error)
	case resp.Message == nil:
		return 0, fmt.Errorf("last message of %s in %s: empty answer", subject, stream)
	}
	return resp.Message.Seq, nil
}
