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
	// historyRetriesMax bounds the pages in a row that read no message
	// although the stream leader named a later last sequence.
	historyRetriesMax = 5
	// historyPageTimeout bounds one page of direct gets.
	historyPageTimeout = time.Second
	// historyLeaderPageMax bounds the messages read from the stream leader
	// one by one after a short page, before direct gets resume.
	historyLeaderPageMax = 100
	// historyRetryWaitMin is the wait after a page without a message; it
	// doubles up to historyRetryWaitMax.
	historyRetryWaitMin = 20 * time.Millisecond
	historyRetryWaitMax = 500 * time.Millisecond
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
// last, at most limit, and calls fn for each, in stream order. It reads page
// by page with direct batch gets, which any replica answers (the local one
// first). A replica may answer short of last: it has not stored the tail
// yet (it lags, or it is catching up after a restart and already answers
// direct gets), or its answer was lost (no answer within historyPageTimeout
// ends a page silently). Then the missing messages are read from the stream
// leader, which holds everything up to last, one by one (readFromLeader),
// then direct gets resume; further pages without a message wait, with
// backoff, and historyRetriesMax of them in a row end the read with an
// error.
func readRange(ctx context.Context, js jetstream.JetStream, stream, subject string, from, last uint64, limit int, fn func(*jetstream.RawStreamMsg) error) error {
	read, short := 0, 0
	wait := historyRetryWaitMin
	for from <= last && read < limit {
		var got int
		var err error
		if short == 0 {
			got, from, err = readPage(ctx, js, stream, subject, from, last, min(historyPageMax, limit-read), fn)
		} else {
			got, from, err = readFromLeader(ctx, js.Conn(), stream, subject, from, last, min(historyLeaderPageMax, limit-read), fn)
		}
		if err != nil {
			return err
		}
		read += got
		if got > 0 {
			short, wait = 0, historyRetryWaitMin
			continue
		}
		if short++; short > historyRetriesMax {
			return fmt.Errorf("read %s of %s: no message from seq %d in %d tries although the leader's last is %d", subject, stream, from, short, last)
		}
		if short == 1 {
			continue // the leader next, at once
		}
		if !sleepCtx(ctx, wait) {
			return fmt.Errorf("read %s of %s from seq %d: %w", subject, stream, from, ctx.Err())
		}
		wait = min(2*wait, historyRetryWaitMax)
	}
	return nil
}

// readPage reads one page of direct batch gets from seq from, calls fn for
// each message up to last and returns how many it read and the sequence to
// go on from. The page has its own deadline, historyPageTimeout: the
// client's default would apply otherwise, and an answer lost in the cluster
// would stall the read that long.
func readPage(ctx context.Context, js jetstream.JetStream, stream, subject string, from, last uint64, page int, fn func(*jetstream.RawStreamMsg) error) (int, uint64, error) {
	pctx, cancel := context.WithTimeout(ctx, historyPageTimeout)
	defer cancel()
	msgs, err := jetstreamext.GetBatch(pctx, js, stream, page,
		jetstreamext.GetBatchSeq(from), jetstreamext.GetBatchSubject(subject), jetstreamext.GetBatchMaxBytes(historyPageBytesMax))
	if err != nil {
		return 0, from, fmt.Errorf("read %s of %s from seq %d: %w", subject, stream, from, err)
	}
	got := 0
	for m, err := range msgs {
		if errors.Is(err, jetstreamext.ErrNoMessages) {
			break
		}
		if err != nil {
			// No replica answered at all (no responders), say: the leader
			// is asked next.
			return got, from, nil
		}
		if done, err := take(m, last, fn, &got, &from); done {
			return got, from, err
		}
	}
	return got, from, nil
}

// take hands m to fn when it is at or below last, counting it in got and
// moving from past it. done reports that the range ended (m is past last:
// from becomes last+1) or that fn failed (from stays at m).
func take(m *jetstream.RawStreamMsg, last uint64, fn func(*jetstream.RawStreamMsg) error, got *int, from *uint64) (done bool, err error) {
	if m.Sequence > last {
		*from = last + 1
		return true, nil
	}
	if err := fn(m); err != nil {
		return true, err
	}
	*got++
	*from = m.Sequence + 1
	return false, nil
}

// readFromLeader reads up to n messages of subject from seq from, up to
// last, from the stream leader ($JS.API.STREAM.MSG.GET, next_by_subj), one
// request each, calls fn for each and returns how many it read and the
// sequence to go on from. A request without an answer within
// leaderRequestTimeout ends it early with what it read.
func readFromLeader(ctx context.Context, nc *nats.Conn, stream, subject string, from, last uint64, n int, fn func(*jetstream.RawStreamMsg) error) (int, uint64, error) {
	got := 0
	for got < n && from <= last {
		m, err := leaderGet(ctx, nc, stream, map[string]any{"seq": from, "next_by_subj": subject})
		if err != nil || m == nil {
			return got, from, nil
		}
		if done, err := take(m, last, fn, &got, &from); done {
			return got, from, err
		}
	}
	return got, from, nil
}

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func storedEvent(m *jetstream.RawStreamMsg) StoredEvent {
	return StoredEvent{Seq: m.Sequence, Subject: m.Subject, StoredAt: m.Time.UTC(), Data: m.Data}
}

// LastSeqFromLeader returns the stream sequence of the last message on
// subject (wildcards allowed) in stream, 0 when there is none. It asks the
// stream leader ($JS.API.STREAM.MSG.GET) rather than a direct get, which any
// replica answers: a replica that lags would report an older sequence. It
// waits at most leaderRequestTimeout (less when ctx ends sooner) for the
// answer.
func LastSeqFromLeader(ctx context.Context, nc *nats.Conn, stream, subject string) (uint64, error) {
	m, err := LastMsgFromLeader(ctx, nc, stream, subject)
	if err != nil || m == nil {
		return 0, err
	}
	return m.Sequence, nil
}

// LastMsgFromLeader returns the last message on subject (wildcards
// allowed) in stream, nil when there is none, from the stream leader as
// LastSeqFromLeader does: a stream's GetLastMsgForSubject is a direct get
// when the stream allows them, and a lagging replica answers it with an
// older message.
func LastMsgFromLeader(ctx context.Context, nc *nats.Conn, stream, subject string) (*jetstream.RawStreamMsg, error) {
	m, err := leaderGet(ctx, nc, stream, map[string]any{"last_by_subj": subject})
	if err != nil {
		return nil, fmt.Errorf("last message of %s in %s: %w", subject, stream, err)
	}
	return m, nil
}

// leaderGet asks the leader of stream for one message
// ($JS.API.STREAM.MSG.GET with req), waiting at most leaderRequestTimeout;
// it returns nil and no error when no message matches.
func leaderGet(ctx context.Context, nc *nats.Conn, stream string, req map[string]any) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := context.WithTimeout(ctx, leaderRequestTimeout)
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	m, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, body)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return nil, err
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, nil
	case resp.Error != nil:
		return nil, resp.Error
	case resp.Message == nil:
		return nil, errors.New("empty answer")
	}
	msg := resp.Message
	hdr := nats.Header{}
	if len(msg.Header) > 0 {
		if hdr, err = nats.DecodeHeadersMsg(msg.Header); err != nil {
			return nil, fmt.Errorf("headers of seq %d: %w", msg.Seq, err)
		}
	}
	return &jetstream.RawStreamMsg{Subject: msg.Subject, Sequence: msg.Seq, Header: hdr, Data: msg.Data, Time: msg.Time}, nil
}
