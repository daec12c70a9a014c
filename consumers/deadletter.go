package consumers

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger/transport"
)

// Dead-letter bounds.
const (
	// deadPublishTimeout bounds the wait for the dead-letter stream's ack of
	// one message; past it the batch is not committed (see deadLetters.send).
	deadPublishTimeout = 5 * time.Second
	// deadReasonMax bounds, in bytes, the reason header of a dead letter.
	deadReasonMax = 1024
	// logReasonMax bounds, in bytes, the reason in a dead letter's log line.
	logReasonMax = 300
)

// dead is a message the projector refuses, with the reason.
type dead struct {
	msg    jetstream.Msg
	seq    uint64
	reason string
}

// deadLetters sends the messages the projector refuses to the dead-letter
// stream. send is called by the fold loop alone; sent is safe for
// concurrent use.
type deadLetters struct {
	js   jetstream.JetStream
	hook func() // Hooks.DeadLettered; nil skips it
	log  *slog.Logger
	n    atomic.Uint64
}

// sent returns how many messages this process dead-lettered.
func (dl *deadLetters) sent() uint64 { return dl.n.Load() }

// send publishes refused messages to the dead-letter stream, each on the
// dead subject of its stored subject (transport.DeadSubject), and waits for
// the acks: a message is never acknowledged before it is either applied or
// dead-lettered. The message id (dead-<seq>) stores a message dead-lettered
// again after a restart once. An error leaves the batch uncommitted.
func (dl *deadLetters) send(ctx context.Context, deads []dead) error {
	for _, d := range deads {
		msg := &nats.Msg{Subject: transport.DeadSubject(d.msg.Subject()), Data: d.msg.Data(), Header: nats.Header{}}
		msg.Header.Set(transport.HeaderDeadReason, truncate(d.reason, deadReasonMax))
		msg.Header.Set(transport.HeaderDeadSubject, d.msg.Subject())
		msg.Header.Set(transport.HeaderDeadSeq, strconv.FormatUint(d.seq, 10))
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadPublishTimeout)
		_, err := dl.js.PublishMsg(pctx, msg, jetstream.WithMsgID("dead-"+strconv.FormatUint(d.seq, 10)), jetstream.WithExpectStream(transport.DeadStream))
		cancel()
		if err != nil {
			return fmt.Errorf("dead-letter seq %d: %w", d.seq, err)
		}
		dl.n.Add(1)
		if dl.hook != nil {
			dl.hook()
		}
		dl.log.Warn("event dead-lettered", "seq", d.seq, "subject", d.msg.Subject(), "reason", truncate(d.reason, logReasonMax))
	}
	return nil
}

// truncate cuts s to at most n bytes.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
