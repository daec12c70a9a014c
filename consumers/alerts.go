package consumers

import (
	"context"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger/transport"
	"stockledger/projections"
)

// alertSource is the store's alert outbox, published on the alert stream
// (stock.alerts.<shop>.<kind>), each change with Nats-Msg-Id <alert id>:<rev>.
type alertSource struct {
	js     jetstream.JetStream
	outbox projections.Outbox
	// partitioned: projectors of several partitions share the outbox, and
	// each drains all of it; the fast path (publishing from memory) is
	// not taken, as its checkpoints would pass over the others' entries.
	partitioned bool
}

func (alertSource) name() string          { return "alert" }
func (alertSource) wanted(f *flight) bool { return f.alerts > 0 }
func (alertSource) stream() string        { return transport.AlertStream }
func (alertSource) subjects() string      { return transport.AlertSubjectRoot + ".>" }

// fast implements outboxSource.
func (as alertSource) fast() bool { return !as.partitioned }

// publishFlight implements outboxSource: f's alert changes, encoded as the
// store encoded them for its outbox.
func (as alertSource) publishFlight(f *flight, through uint64) ([]jetstream.PubAckFuture, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(f.alertList))
	for i := range f.alertList {
		ob, err := projections.NewOutboxAlert(&f.alertList[i], f.lastSeq)
		if err != nil {
			return nil, err
		}
		fut, err := as.publish(ob, through)
		if err != nil {
			return nil, err
		}
		futures = append(futures, fut)
	}
	return futures, nil
}

// flush implements outboxSource.
func (as alertSource) flush(ctx context.Context, floor, through uint64) (int, uint64, error) {
	pending, err := as.outbox.PendingAlerts(ctx, outboxBatchMax)
	if err != nil || len(pending) == 0 {
		return 0, 0, err
	}
	futures := make([]jetstream.PubAckFuture, 0, len(pending))
	for _, ob := range pending {
		if floor > 0 && ob.Checkpoint < floor {
			continue // published before this process started
		}
		f, err := as.publish(ob, through)
		if err != nil {
			return 0, 0, err
		}
		futures = append(futures, f)
	}
	if err := awaitAcks(ctx, futures); err != nil {
		return 0, 0, fmt.Errorf("publish alert: %w", err)
	}
	last := pending[len(pending)-1]
	if err := as.outbox.DeletePendingAlerts(ctx, last.ID); err != nil {
		return 0, 0, fmt.Errorf("delete published alerts: %w", err)
	}
	return len(pending), last.Checkpoint, nil
}

// publish sends one outbox entry to the alert stream without waiting for
// its ack: the bytes the store encoded at Stage, as they are; the entry's
// checkpoint and the publisher's published-through sequence go in headers
// (see skipPublished).
func (as alertSource) publish(ob projections.OutboxAlert, through uint64) (jetstream.PubAckFuture, error) {
	msg := &nats.Msg{Subject: transport.AlertSubject(ob.Shop, string(ob.Kind)), Data: ob.Data, Header: nats.Header{}}
	msg.Header.Set(transport.HeaderCheckpoint, strconv.FormatUint(ob.Checkpoint, 10))
	msg.Header.Set(transport.HeaderPublishedThrough, strconv.FormatUint(through, 10))
	f, err := as.js.PublishMsgAsync(msg, jetstream.WithMsgID(ob.AlertID+":"+strconv.Itoa(ob.Rev)), jetstream.WithExpectStream(transport.AlertStream))
	if err != nil {
		return nil, fmt.Errorf("publish alert %s: %w", ob.AlertID, err)
	}
	return f, nil
}
