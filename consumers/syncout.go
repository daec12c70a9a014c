package consumers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	// After a rebuild has committed reconcileAt (0: nothing to do) and
	// published its instructions, reconcile brings the bucket in line with
	// the read model (reader) once, for the shops own says are this
	// projector's; applied is the projector's committed sequence.
	reconcileAt uint64
	applied     func() uint64
	reader      skuReader
	own         ownership
}

func (*syncSource) name() string          { return "sync instruction" }
func (*syncSource) wanted(f *flight) bool { return f.syncs > 0 }
func (*syncSource) stream() string        { return transport.SyncStream }
func (*syncSource) subjects() string      { return transport.SyncSubjectRoot + ".>" }

// rebuilding makes the source pass over what was published before, SKU by
// SKU (floors). Call it before the publisher starts.
func (ss *syncSource) rebuilding() { ss.floors = make(map[projections.SKUKey]uint64) }

// fast implements outboxSource: not while a rebuild decides what the stream
// has (floors) or has still to reconcile the bucket, nor with partitions
// (see alertSource.partitioned).
func (ss *syncSource) fast() bool {
	return ss.floors == nil && ss.reconcileAt == 0 && ss.own.partitions < 2
}

// publishFlight implements outboxSource: f's instructions, encoded as the
// store encoded them for its outbox. Instructions carry their own sequences
// (see told), not the publisher's published-through one.
func (ss *syncSource) publishFlight(f *flight, _ uint64) ([]jetstream.PubAckFuture, error) {
	futures := make([]jetstream.PubAckFuture, 0, 2*len(f.syncList))
	for i := range f.syncList {
		ob, err := projections.NewOutboxSync(&f.syncList[i], f.lastSeq)
		if err != nil {
			return nil, err
		}
		fs, err := ss.publish(ob)
		if err != nil {
			return nil, err
		}
		futures = append(futures, fs...)
	}
	return futures, nil
}

// flush implements outboxSource. Entries of batches below floor were
// published by the fast path; during a rebuild the instructions' own
// sequences say what the stream has (told).
func (ss *syncSource) flush(ctx context.Context, floor, _ uint64) (int, uint64, error) {
	pending, err := ss.outbox.PendingSync(ctx, outboxBatchMax)
	if err != nil {
		return 0, 0, err
	}
	if len(pending) == 0 {
		return 0, 0, ss.reconcileDue(ctx)
	}
	futures := make([]jetstream.PubAckFuture, 0, 2*len(pending))
	for _, ob := range pending {
		if ob.Checkpoint < floor {
			continue
		}
		told, err := ss.told(ctx, &ob)
		if err != nil {
			return 0, 0, err
		}
		var fs []jetstream.PubAckFuture
		switch told {
		case toldBefore:
			continue
		case toldLast:
			fs, err = ss.putTarget(ob)
		default:
			fs, err = ss.publish(ob)
		}
		if err != nil {
			return 0, 0, err
		}
		futures = append(futures, fs...)
	}
	if err := awaitAcks(ctx, futures); err != nil {
		return 0, 0, fmt.Errorf("publish sync instruction: %w", err)
	}
	last := pending[len(pending)-1]
	if err := ss.outbox.DeletePendingSync(ctx, last.ID); err != nil {
		return 0, 0, fmt.Errorf("delete published sync instructions: %w", err)
	}
	return len(pending), last.Checkpoint, nil
}

// reconcileDue runs reconcile once the rebuild has committed reconcileAt
// and its outbox is empty (the caller found it so).
func (ss *syncSource) reconcileDue(ctx context.Context) error {
	if ss.reconcileAt == 0 || ss.applied() < ss.reconcileAt {
		return nil
	}
	if err := ss.reconcile(ctx); err != nil {
		return fmt.Errorf("reconcile sync targets: %w", err)
	}
	// What the stream had at start is behind: every instruction from now
	// on is new to it.
	ss.reconcileAt, ss.floors = 0, nil
	return nil
}

// reconcile puts in the bucket, for every key of this projector's shops,
// the instruction the read model calls for (InstructionOf), or deletes the
// key when none is due. A rebuild's instructions depend on its batch
// boundaries (SKU.Sync runs once per SKU per batch), which differ from
// those of the run that filled the bucket: a key put by that run may have
// no later instruction or clear in the rebuild to replace it.
func (ss *syncSource) reconcile(ctx context.Context) error {
	kv, err := ss.js.KeyValue(ctx, transport.SyncTargetsBucket)
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer w.Stop() //nolint:errcheck // a watcher's stop error tells nothing here
	var futures []jetstream.PubAckFuture
	for e := range w.Updates() {
		if e == nil {
			break // every current value seen
		}
		var held projections.SyncInstruction
		if json.Unmarshal(e.Value(), &held) != nil || !ss.own.owns(held.Shop) {
			continue
		}
		fs, err := ss.mend(ctx, held, e.Value())
		if err != nil {
			return err
		}
		futures = append(futures, fs...)
	}
	return awaitAcks(ctx, futures)
}

// mend puts the instruction the read model calls for in place of held
// (stored as data), or clears its key; nothing when data is already right.
func (ss *syncSource) mend(ctx context.Context, held projections.SyncInstruction, data []byte) ([]jetstream.PubAckFuture, error) {
	ob := projections.OutboxSync{Shop: held.Shop, SKU: held.SKU, Clear: true}
	v, err := ss.reader.SKU(ctx, held.Shop, held.SKU)
	switch {
	case errors.Is(err, projections.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		if in, due := projections.InstructionOf(&v); due {
			if ob.Data, err = json.Marshal(in); err != nil {
				return nil, err
			}
			if bytes.Equal(ob.Data, data) {
				return nil, nil
			}
			ob.Clear = false
		}
	}
	return ss.putTarget(ob)
}

// What a rebuild finds of an instruction on the stream (told).
const (
	toldNot    = iota // not on the stream: publish it
	toldBefore        // below the SKU's last one there: pass it over
	toldLast          // the SKU's last one there: put it in the bucket again
)

// told says, during a rebuild, where ob's instruction stands against the
// last instruction of its SKU on the stream (read once per SKU, then
// kept), and moves the SKU's floor to ob's when it is new. The last one
// told is put in the bucket again: a crash between its stream publish and
// its bucket put leaves the bucket behind the stream, and nothing else
// would mend it.
func (ss *syncSource) told(ctx context.Context, ob *projections.OutboxSync) (int, error) {
	if ss.floors == nil {
		return toldNot, nil
	}
	k := projections.SKUKey{Shop: ob.Shop, SKU: ob.SKU}
	floor, ok := ss.floors[k]
	if !ok {
		var err error
		if floor, err = ss.lastPublished(ctx, ob.Shop, ob.SKU); err != nil {
			return toldNot, err
		}
		ss.floors[k] = floor
	}
	switch {
	case ob.Seq < floor:
		return toldBefore, nil
	case ob.Seq == floor:
		return toldLast, nil
	}
	ss.floors[k] = ob.Seq
	return toldNot, nil
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

// putTarget puts one instruction (or its clear) in the bucket without
// waiting for the ack.
func (ss *syncSource) putTarget(ob projections.OutboxSync) ([]jetstream.PubAckFuture, error) {
	key := &nats.Msg{Subject: transport.SyncTargetKVSubject(ob.Shop, ob.SKU), Header: nats.Header{}, Data: ob.Data}
	what := "put"
	if ob.Clear {
		key.Header.Set("KV-Operation", "DEL")
		key.Data, what = nil, "clear"
	}
	f, err := ss.js.PublishMsgAsync(key)
	if err != nil {
		return nil, fmt.Errorf("%s sync target %s/%s: %w", what, ob.Shop, ob.SKU, err)
	}
	return []jetstream.PubAckFuture{f}, nil
}

// publish sends one instruction to the stream and the bucket without
// waiting for the acks: the bytes the store encoded at Stage, as they are.
// A clear only deletes the bucket's key.
func (ss *syncSource) publish(ob projections.OutboxSync) ([]jetstream.PubAckFuture, error) {
	if ob.Clear {
		return ss.putTarget(ob)
	}
	msg := &nats.Msg{Subject: transport.SyncSubject(ob.Shop, ob.SKU), Data: ob.Data, Header: nats.Header{}}
	msg.Header.Set(transport.HeaderCheckpoint, strconv.FormatUint(ob.Checkpoint, 10))
	f1, err := ss.js.PublishMsgAsync(msg, jetstream.WithMsgID(ob.Key), jetstream.WithExpectStream(transport.SyncStream))
	if err != nil {
		return nil, fmt.Errorf("publish sync instruction %s: %w", ob.Key, err)
	}
	f2, err := ss.putTarget(ob)
	if err != nil {
		return nil, err
	}
	return append(f2, f1), nil
}
