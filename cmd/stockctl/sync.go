package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// Sync adapter bounds.
const (
	// syncAckPendingMax bounds the instructions delivered to the adapter
	// and not yet acknowledged; the server holds the rest back until some
	// are.
	syncAckPendingMax = 256
	// syncPullMax is how many instructions one pull asks for; at most
	// syncAckPendingMax.
	syncPullMax = 64
	// syncAckWait is how long the server waits for the ack of a delivered
	// instruction before it delivers it again, to this run or the next.
	syncAckWait = 30 * time.Second
	// syncOnceFetchWait is how long -once waits before it pulls again when
	// instructions are pending and none could be delivered.
	syncOnceFetchWait = time.Second
	// syncOnceWaitMax bounds how long -once waits for pending instructions
	// the server holds back while syncAckPendingMax are taken by a run that
	// stopped (it delivers those again after syncAckWait); past it -once
	// fails.
	syncOnceWaitMax = syncAckWait + 10*time.Second
	// syncRetryWait is the delay before an instruction whose stock_set
	// could not be posted (ledgerd unreachable or busy) is delivered again.
	syncRetryWait = 5 * time.Second
	// syncSetupTimeout bounds connecting to NATS, creating the consumer and
	// reading the current targets at start.
	syncSetupTimeout = 30 * time.Second
	// syncTargetsMax bounds the current targets of a shop read at start;
	// a shop with more fails the start (the bucket holds one per SKU whose
	// figures differ).
	syncTargetsMax = 100_000
	// syncHistoryPage and syncHistoryPagesMax bound the reading of a SKU's
	// history to learn whether an earlier run posted an instruction's
	// stock_set already. Past them the stock_set is posted: harmless for
	// the reference adapter (the next instruction corrects the figure).
	syncHistoryPage     = 1000
	syncHistoryPagesMax = 10
)

// syncMode says which instructions the adapter applies.
type syncMode string

const (
	// syncDown applies only instructions that lower the platform figure.
	syncDown syncMode = "down"
	// syncFull applies every instruction.
	syncFull syncMode = "full"
)

// syncer follows one shop's sync instructions and applies them as a
// platform kept by hand would: it publishes the stock_set the platform
// confirms. Not safe for concurrent use.
type syncer struct {
	c    *cli
	shop string
	mode syncMode
	kv   jetstream.KeyValue // STOCK_SYNC_TARGETS
	// handled is each SKU's highest instruction seq applied or left: an
	// instruction at or below it describes a state a later one replaced.
	handled map[string]uint64
	counts  map[string]int // decisions by action, for the summary
}

// syncDecision is what the adapter did with one instruction.
type syncDecision struct {
	At       time.Time `json:"at"`
	Shop     string    `json:"shop"`
	SKU      string    `json:"sku"`
	Action   string    `json:"action"` // applied, already, left, stale, refused
	Listed   int64     `json:"listed"`
	Sellable int64     `json:"sellable"`
	Key      string    `json:"key"`
	EventID  string    `json:"event_id,omitempty"`
	EventSeq uint64    `json:"event_seq,omitempty"` // the stock_set's stream sequence
	Reason   string    `json:"reason,omitempty"`
}

func (c *cli) sync(ctx context.Context, args []string) error {
	fs := c.flags("sync")
	mode := fs.String("mode", string(syncDown), "down: only lower the platform figure; full: also raise it")
	natsURL := fs.String("nats-url", cmp.Or(c.getenv("NATS_URL"), nats.DefaultURL), "NATS server of ledgerd (NATS_URL)")
	once := fs.Bool("once", false, "apply what is pending and exit")
	pos, err := parse(fs, args, "SHOP")
	if err != nil {
		return err
	}
	if *mode != string(syncDown) && *mode != string(syncFull) {
		return fmt.Errorf("-mode %q: must be down or full", *mode)
	}
	if err := checkName("SHOP", pos[0]); err != nil {
		return err
	}
	s := &syncer{c: c, shop: pos[0], mode: syncMode(*mode), handled: map[string]uint64{}, counts: map[string]int{}}
	nc, err := nats.Connect(*natsURL, nats.Name("stockctl sync "+s.shop), nats.Timeout(syncSetupTimeout),
		nats.MaxReconnects(-1), nats.ReconnectWait(time.Second))
	if err != nil {
		return fmt.Errorf("connect to NATS %s: %w (-nats-url or NATS_URL)", *natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cons, err := s.start(ctx, js)
	if err != nil {
		return err
	}
	if *once {
		err = s.drain(ctx, cons)
	} else {
		s.logf("following %s as consumer %s (mode %s); Ctrl-C stops, the consumer keeps the position",
			transport.SyncShopFilter(s.shop), syncConsumerName(s.shop), s.mode)
		err = s.follow(ctx, cons)
	}
	s.summary()
	return err
}

// checkName checks a shop or SKU as the ledger does: it becomes a NATS
// subject token.
func checkName(what, v string) error {
	ok := len(v) >= 1 && len(v) <= ledger.MaxNameLen
	for _, r := range v {
		ok = ok && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}
	if !ok {
		return fmt.Errorf("%s %q: must match ^[A-Za-z0-9_-]{1,%d}$ (it becomes a NATS subject token)", what, v, ledger.MaxNameLen)
	}
	return nil
}

// syncConsumerName is the durable consumer of a shop's adapter.
func syncConsumerName(shop string) string { return "stockctl-sync-" + shop }

// start creates (or finds) the shop's durable consumer, then applies the
// shop's current targets from the STOCK_SYNC_TARGETS bucket: they cover
// SKUs whose instruction is older than the stream keeps, instructions an
// earlier run left (mode down) that this one may apply, and a position
// the stream aged past. The consumer is created first, so that nothing
// published meanwhile is missed; what it delivers again is passed over.
func (s *syncer) start(ctx context.Context, js jetstream.JetStream) (jetstream.Consumer, error) {
	setup, cancel := context.WithTimeout(ctx, syncSetupTimeout)
	defer cancel()
	cons, err := js.CreateOrUpdateConsumer(setup, transport.SyncStream, jetstream.ConsumerConfig{
		Durable:       syncConsumerName(s.shop),
		Description:   "stockctl sync: the reference adapter of shop " + s.shop,
		FilterSubject: transport.SyncShopFilter(s.shop),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       syncAckWait,
		MaxDeliver:    -1,
		MaxAckPending: syncAckPendingMax,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s on stream %s: %w (is ledgerd running on this NATS?)", syncConsumerName(s.shop), transport.SyncStream, err)
	}
	targets, err := s.targets(setup, js)
	if err != nil {
		return nil, err
	}
	for _, in := range targets {
		if _, err := s.handle(ctx, in, true); err != nil {
			return nil, err
		}
	}
	return cons, nil
}

// targets reads the shop's current instructions from the bucket, by SKU.
func (s *syncer) targets(ctx context.Context, js jetstream.JetStream) ([]projections.SyncInstruction, error) {
	kv, err := js.KeyValue(ctx, transport.SyncTargetsBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w (is ledgerd running on this NATS?)", transport.SyncTargetsBucket, err)
	}
	s.kv = kv
	w, err := kv.Watch(ctx, s.shop+".*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read targets of %s: %w", s.shop, err)
	}
	defer w.Stop()
	var out []projections.SyncInstruction
	for e := range w.Updates() {
		if e == nil {
			break // the end of the current values
		}
		var in projections.SyncInstruction
		if err := json.Unmarshal(e.Value(), &in); err != nil || in.Shop != s.shop || checkName("sku", in.SKU) != nil {
			s.logf("%s: target %s is not an instruction of this shop, passed over: %s", s.shop, e.Key(), e.Value())
			continue
		}
		if len(out) == syncTargetsMax {
			return nil, fmt.Errorf("targets of %s: more than %d", s.shop, syncTargetsMax)
		}
		out = append(out, in)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read targets of %s: %w", s.shop, err)
	}
	slices.SortFunc(out, func(a, b projections.SyncInstruction) int { return cmp.Compare(a.SKU, b.SKU) })
	return out, nil
}

// follow applies instructions as they come until ctx ends.
func (s *syncer) follow(ctx context.Context, cons jetstream.Consumer) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(syncPullMax))
	if err != nil {
		return fmt.Errorf("follow %s: %w", transport.SyncShopFilter(s.shop), err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return nil // Ctrl-C: acknowledged instructions stay acknowledged
		}
		if err != nil {
			return fmt.Errorf("follow %s: %w", transport.SyncShopFilter(s.shop), err)
		}
		if err := s.message(ctx, msg, false); err != nil {
			return err
		}
	}
}

// drain applies the instructions pending for the consumer and returns
// (-once). Instructions an earlier run took and did not acknowledge are
// not waited for: the current targets, applied at start, are at least as
// new, and a later run passes them over.
func (s *syncer) drain(ctx context.Context, cons jetstream.Consumer) error {
	deadline := time.Now().Add(syncOnceWaitMax)
	for ctx.Err() == nil {
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("consumer %s: %w", syncConsumerName(s.shop), err)
		}
		if info.NumPending == 0 {
			return nil
		}
		batch, err := cons.FetchNoWait(syncPullMax)
		if err != nil {
			return fmt.Errorf("fetch instructions: %w", err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			if err := s.message(ctx, msg, true); err != nil {
				return err
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("fetch instructions: %w", err)
		}
		if n > 0 {
			continue
		}
		// Pending but none delivered: the consumer's syncAckPendingMax
		// are taken by a run that stopped; they come back after syncAckWait.
		if time.Now().After(deadline) {
			return fmt.Errorf("%d instructions pending, none delivered within %s: %d taken by another run and not acknowledged (is another stockctl sync %s running?)",
				info.NumPending, syncOnceWaitMax, info.NumAckPending, s.shop)
		}
		select {
		case <-ctx.Done():
		case <-time.After(syncOnceFetchWait):
		}
	}
	return nil
}

// message handles one delivered instruction and acknowledges it. A
// stock_set that could not be posted leaves the instruction to be
// delivered again (after syncRetryWait); with fail (-once) it also ends
// the run with the error.
func (s *syncer) message(ctx context.Context, msg jetstream.Msg, fail bool) error {
	var in projections.SyncInstruction
	if err := json.Unmarshal(msg.Data(), &in); err != nil || in.Shop != s.shop ||
		msg.Subject() != transport.SyncSubject(in.Shop, in.SKU) || in.Sellable < 0 {
		s.logf("%s: message on %s is not an instruction of this shop, passed over (%v): %s", s.shop, msg.Subject(), err, msg.Data())
		return msg.Term()
	}
	meta, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("instruction %s: %w", in.Key, err)
	}
	retry, err := s.apply(ctx, in, meta.NumDelivered > 1)
	switch {
	case err != nil && retry && !fail && ctx.Err() == nil:
		s.logf("%s/%s: instruction %s not applied, retried in %s: %v", in.Shop, in.SKU, in.Key, syncRetryWait, err)
		return msg.NakWithDelay(syncRetryWait)
	case err != nil:
		_ = msg.Nak() // delivered again to the next run
		if ctx.Err() != nil {
			return nil // stopped while posting
		}
		return err
	}
	if err := msg.DoubleAck(ctx); err != nil && ctx.Err() == nil {
		// Delivered again later, with the stock_set found in the history.
		s.logf("%s/%s: ack of instruction %s: %v", in.Shop, in.SKU, in.Key, err)
	}
	return nil
}

// apply handles a delivered instruction. One delivered before (again) may
// have had its stock_set posted by an earlier run (or this one) that
// stopped before the ack, and a run that restarted knows no newer
// instruction of the SKU than the bucket's: it is checked against both.
func (s *syncer) apply(ctx context.Context, in projections.SyncInstruction, again bool) (retry bool, err error) {
	if again {
		cur, err := s.current(ctx, in)
		if err != nil || !cur {
			return true, err
		}
	}
	return s.handle(ctx, in, again)
}

// current reports whether in is still its SKU's target in the bucket; if
// not, it reports why it is passed over. A target newer than in, or none
// (listed and sellable agree now), makes in stale.
func (s *syncer) current(ctx context.Context, in projections.SyncInstruction) (bool, error) {
	e, err := s.kv.Get(ctx, transport.ViewKey(in.Shop, in.SKU))
	reason := ""
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		reason = "no target now: the platform figure and sellable agree"
	case err != nil:
		return false, fmt.Errorf("%s/%s: target: %w", in.Shop, in.SKU, err)
	default:
		var cur projections.SyncInstruction
		if err := json.Unmarshal(e.Value(), &cur); err != nil {
			return false, fmt.Errorf("%s/%s: target %s: %w", in.Shop, in.SKU, e.Value(), err)
		}
		if cur.Seq <= in.Seq {
			return true, nil
		}
		reason = "older than the current target " + cur.Key
	}
	d := syncDecision{Shop: in.Shop, SKU: in.SKU, Listed: in.Listed, Sellable: in.Sellable, Key: in.Key, Action: "stale", Reason: reason}
	return false, s.report(d)
}
