package consumers

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger/transport"
	"stockledger/projections"
)

// syncSource is the store's sync outbox: each instruction is published on
// stock.sync.<shop>.<sku> (stream STOCK_SYNC, Nats-Msg-Id its key) and put
// under <shop>.<sku> in the STOCK_SYNC_TARGETS bucket; a clear (listed and
// sellable agree again) deletes the key and publishes nothing on the
// stream. Publishes of one connection keep their order, so a SKU's bucket
// key ends with its latest instruction.
type syncSource struct {
	js     jetstream.JetStream
	outbox projections.Outbox
}

func (syncSource) name() string          { return "sync instruction" }
func (syncSource) wanted(f *flight) bool { return f.syncs > 0 }
func (syncSource) stream() string        { return transport.SyncStream }
func (syncSource) subjects() string      { return transport.SyncSubjectRoot + ".>" }

// flush implements outboxSource.
func (ss syncSource) flush(ctx context.Context, floor uint64) (int, error) {
	pending, err := ss.outbox.PendingSync(ctx, outboxBatchMax)
	if err != nil || len(pending) == 0 {
		return 0, err
	}
	futures := make([]jetstream.PubAckFuture, 0, 2*len(pending))
	for _, ob := range pending {
		if floor > 0 && ob.Checkpoint < floor {
			continue // published before this process started
		}
		fs, err := ss.publish(ob)
		if err != nil {
			return 0, err
		}
		futures = append(futures, fs...)
	}
	if err := awaitAcks(ctx, futures); err != nil {
		return 0, fmt.Errorf("publish sync instruction: %w", err)
	}
	if err := ss.outbox.DeletePendingSync(ctx, pending[len(pending)-1].ID); err != nil {
		return 0, fmt.Errorf("delete published sync instructions: %w", err)
	}
	return len(pending), nil
}

// publish sends one instruction to the stream and the bucket without
// waiting for the acks.
func (ss syncSource) publish(ob projections.OutboxSync) ([]jetstream.PubAckFuture, error) {
	in := ob.Instruction
	key := &nats.Msg{Subject: transport.SyncTargetKVSubject(in.Shop, in.SKU), Header: nats.Header{}}
	if ob.Clear {
		key.Header.Set("KV-Operation", "DEL")
		f, err := ss.js.PublishMsgAsync(key)
		if err != nil {
			return nil, fmt.Errorf("clear sync target %s/%s: %w", in.Shop, in.SKU, err)
		}
		return []jetstream.PubAckFuture{f}, nil
	}
	data, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: transport.SyncSubject(in.Shop, in.SKU), Data: data, Header: nats.Header{}}
	msg.Header.Set(transport.HeaderCheckpoint, strconv.FormatUint(ob.Checkpoint, 10))
	f1, err := ss.js.PublishMsgAsync(msg, jetstream.WithMsgID(in.Key), jetstream.WithExpectStream(transport.SyncStream))
	if err != nil {
		return nil, fmt.Errorf("publish sync instruction %s: %w", in.Key, err)
	}
	key.Data = data
	f2, err := ss.js.PublishMsgAsync(key)
	if err != nil {
		return nil, fmt.Errorf("put sync target %s/%s: %w", in.Shop, in.SKU, err)
	}
	return []jetstream.PubAckFuture{f1, f2}, nil
}
