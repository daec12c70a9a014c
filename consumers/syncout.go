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
	// floors, while the read model is rebuilt from sequence 1 (rebuilding),
	// holds for each SKU the sequence of the last instruction on the
	// stream: an instruction of the rebuild at or below it describes a
	// state the platform was told of already (or one a later instruction
	// replaced), and is passed over, a clear too. Nil otherwise.
	floors map[projections.SKUKey]uint64
}

func (*syncSource) name() string          { return "sync instruction" }
func (*syncSource) wanted(f *flight) bool { return f.syncs > 0 }
func (*syncSource) stream() string        { return transport.SyncStream }
func (*syncSource) subjects() string      { return transport.SyncSubjectRoot + ".>" }

// rebuilding makes the source pass over what was published before, SKU by
// SKU (floors). Call it before the publisher starts.
func (ss *syncSource) rebuilding() { ss.floors = make(map[projections.SKUKey]uint64) }

// flush implements outboxSource. The checkpoint floor is not used: the
// instructions' own sequences say what is stale (floors).
func (ss *syncSource) flush(ctx context.Context, _ uint64) (int, error) {
	pending, err := ss.outbox.PendingSync(ctx, outboxBatchMax)
	if err != nil || len(pending) == 0 {
		return 0, err
	}
	futures := make([]jetstream.PubAckFuture, 0, 2*len(pending))
	for _, ob := range pending {
		stale, err := ss.stale(ctx, &ob)
		if err != nil {
			return 0, err
		}
		if stale {
			continue
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

// stale reports whether, during a rebuild, ob's instruction is at or below
// the last instruction of its SKU on the stream (read once per SKU, then
// kept); it moves the SKU's floor to ob's otherwise.
func (ss *syncSource) stale(ctx context.Context, ob *projections.OutboxSync) (bool, error) {
	if ss.floors == nil {
		return false, nil
	}
	k := projections.SKUKey{Shop: ob.Shop, SKU: ob.SKU}
	floor, ok := ss.floors[k]
	if !ok {
		var err error
		if floor, err = ss.lastPublished(ctx, ob.Shop, ob.SKU); err != nil {
			return false, err
		}
	}
	if ob.Seq <= floor {
		ss.floors[k] = floor
		return true, nil
	}
	ss.floors[k] = ob.Seq
	return false, nil
}

// lastPublished reads the sequence of the SKU's last instruction on the
// stream, 0 when there is none.
func (ss *syncSource) lastPublished(ctx context.Context, shop, sku string) (uint64, error) {
	m, err := transport.LastMsgFromLeader(ctx, ss.js.Conn(), transport.SyncStream, transport.SyncSubject(shop, sku))
	if err != nil {
		return 0, fmt.Errorf("last sync instruction of %s/%s: %w", shop, sku, err)
	}
	if m == nil {
		return 0, nil
	}
	var in projections.SyncInstruction
	if err := json.Unmarshal(m.Data, &in); err != nil {
		return 0, fmt.Errorf("last sync instruction of %s/%s: %w", shop, sku, err)
	}
	return in.Seq, nil
}

// publish sends one instruction to the stream and the bucket without
// waiting for the acks: the bytes the store encoded at Stage, as they are.
func (ss *syncSource) publish(ob projections.OutboxSync) ([]jetstream.PubAckFuture, error) {
	key := &nats.Msg{Subject: transport.SyncTargetKVSubject(ob.Shop, ob.SKU), Header: nats.Header{}}
	if ob.Clear {
		key.Header.Set("KV-Operation", "DEL")
		f, err := ss.js.PublishMsgAsync(key)
		if err != nil {
			return nil, fmt.Errorf("clear sync target %s/%s: %w", ob.Shop, ob.SKU, err)
		}
		return []jetstream.PubAckFuture{f}, nil
	}
	msg := &nats.Msg{Subject: transport.SyncSubject(ob.Shop, ob.SKU), Data: ob.Data, Header: nats.Header{}}
	msg.Header.Set(transport.HeaderCheckpoint, strconv.FormatUint(ob.Checkpoint, 10))
	f1, err := ss.js.PublishMsgAsync(msg, jetstream.WithMsgID(ob.Key), jetstream.WithExpectStream(transport.SyncStream))
	if err != nil {
		return nil, fmt.Errorf("publish sync instruction %s: %w", ob.Key, err)
	}
	key.Data = ob.Data
	f2, err := ss.js.PublishMsgAsync(key)
	if err != nil {
		return nil, fmt.Errorf("put sync target %s/%s: %w", ob.Shop, ob.SKU, err)
	}
	return []jetstream.PubAckFuture{f1, f2}, nil
}
