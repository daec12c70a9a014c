// Package consumertest holds the check every fault test of the ledger ends
// with: read the whole event stream, fold it afresh exactly as the projector
// accepts events, and compare with what the service shows; count every
// acknowledged event and every sale in the stream; find every alert change on
// the alert stream. It is test support: it reads the stream and does no
// writes.
package consumertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/ledger"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// emptyFetchesMax bounds the empty fetches in a row (5 s each) before the
// stream reader gives up.
const emptyFetchesMax = 6

// fetchMax bounds one fetch of the stream reader.
const fetchMax = 1000

// Ledger is the whole event stream folded afresh.
type Ledger struct {
	// LastSeq is the stream's last sequence when it was read.
	LastSeq uint64
	// SKUs are the folded states.
	SKUs map[projections.SKUKey]*projections.SKU
	// Alerts holds the last change of every alert the fold raised.
	Alerts map[string]projections.Alert
	// IDs counts stored copies of each event id (messages that decode).
	IDs map[string]int
	// Sales counts stored sale messages per shop/sku/order id.
	Sales map[string]int
	// Refused maps the sequence of each message the fold refused to why:
	// the projector must have dead-lettered exactly these.
	Refused map[uint64]string
	// Shops are the shops' healths, folded as the projector folds them.
	Shops map[string]*projections.Shop

	cfg projections.FoldConfig
}

// eventNamespace must equal the projector's: a raw event without id gets
// the id derived from its stream sequence.
var eventNamespace = uuid.MustParse("9e0d6b7c-51b4-4c55-8a3f-6d0e2f7a1b83")

// Read reads STOCK_EVENTS from sequence 1 to its current end with an ordered
// consumer and folds it with the fold configuration cfg (the service's).
func Read(ctx context.Context, js jetstream.JetStream, cfg projections.FoldConfig) (*Ledger, error) {
	st, err := js.Stream(ctx, transport.EventStream)
	if err != nil {
		return nil, fmt.Errorf("event stream: %w", err)
	}
	l := &Ledger{cfg: cfg, LastSeq: st.CachedInfo().State.LastSeq, SKUs: map[projections.SKUKey]*projections.SKU{},
		Alerts: map[string]projections.Alert{}, IDs: map[string]int{}, Sales: map[string]int{}, Refused: map[uint64]string{},
		Shops: map[string]*projections.Shop{}}
	if l.LastSeq == 0 {
		return l, nil
	}
	cons, err := js.OrderedConsumer(ctx, transport.EventStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("read stream: %w", err)
	}
	next, empty := uint64(1), 0
	for next <= l.LastSeq {
		batch, err := cons.Fetch(fetchMax, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("read stream at %d: %w", next, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			if meta.Sequence.Stream != next {
				return nil, fmt.Errorf("stream read gap: want seq %d, got %d", next, meta.Sequence.Stream)
			}
			l.apply(m, meta)
			next++
			if next > l.LastSeq {
				break
			}
		}
		if n == 0 {
			// Right after a fault (a cluster's stream leader moving) a
			// fetch can come back empty; a read that stays empty is stuck.
			if empty++; empty == emptyFetchesMax {
				return nil, fmt.Errorf("stream read stalled at seq %d of %d: %d empty fetches", next, l.LastSeq, empty)
			}
			continue
		}
		empty = 0
	}
	return l, nil
}

// apply folds one message as the projector does (its decoder in
// consumers/decode.go, then the fold).
func (l *Ledger) apply(m jetstream.Msg, meta *jetstream.MsgMetadata) {
	seq := meta.Sequence.Stream
	e, err := ledger.DecodeEvent(m.Data())
	if err != nil {
		l.Refused[seq] = "decode: " + err.Error()
		return
	}
	if e.ID == "" {
		e.ID = uuid.NewSHA1(eventNamespace, strconv.AppendUint(nil, seq, 10)).String()
	}
	if e.At.IsZero() {
		e.At = meta.Timestamp.UTC()
	}
	l.IDs[e.ID]++
	if err := e.ValidateStored(); err != nil {
		l.Refused[seq] = "validate: " + err.Error()
		return
	}
	if err := e.CheckClock(meta.Timestamp); err != nil {
		l.Refused[seq] = "validate: " + err.Error()
		return
	}
	shop, sku, ok := transport.ParseEventSubject(m.Subject())
	if !ok || shop != e.Shop || sku != e.SKU {
		l.Refused[seq] = "subject " + m.Subject()
		return
	}
	if e.Type == ledger.Sale {
		l.Sales[e.Shop+"/"+e.SKU+"/"+e.OrderID]++
	}
	k := projections.SKUKey{Shop: e.Shop, SKU: e.SKU}
	s := l.SKUs[k]
	if s == nil {
		s = projections.NewSKU(e.Shop, e.SKU)
		s.Config = l.cfg
		l.SKUs[k] = s
	}
	sh := l.Shops[e.Shop]
	if sh == nil {
		sh = projections.NewShop(e.Shop)
		sh.Config = l.cfg
		l.Shops[e.Shop] = sh
	}
	before := s.Contribution()
	alerts, err := s.Apply(seq, &e)
	if err != nil {
		l.Refused[seq] = err.Error()
		return
	}
	alerts = append(alerts, sh.Add(seq, e.At, before, s.Contribution())...)
	for _, a := range alerts {
		l.Alerts[a.ID] = a
	}
}

// Figures are what a fault run reports.
type Figures struct {
	Acknowledged, Lost, Duplicated int
}

// CheckAcked counts the acknowledged event ids: each must be in the stream
// exactly once. It also requires every stored event id and every sale's
// order id to be stored once. Problems are returned as text, one per line.
func (l *Ledger) CheckAcked(acked map[string]bool) (Figures, []string) {
	f := Figures{Acknowledged: len(acked)}
	var problems []string
	for id := range acked {
		switch n := l.IDs[id]; {
		case n == 0:
			f.Lost++
			problems = append(problems, fmt.Sprintf("acknowledged event %s is not in the stream", id))
		case n > 1:
			f.Duplicated++
			problems = append(problems, fmt.Sprintf("acknowledged event %s is stored %d times", id, n))
		}
	}
	for id, n := range l.IDs {
		if n > 1 && !acked[id] {
			f.Duplicated++
			problems = append(problems, fmt.Sprintf("event %s is stored %d times", id, n))
		}
	}
	for order, n := range l.Sales {
		if n > 1 {
			problems = append(problems, fmt.Sprintf("sale %s is stored %d times", order, n))
		}
	}
	return f, problems
}

// CompareView compares a view the service shows with the fresh fold's. The
// update time is left out: the stores keep it at different precisions; so is
// the sequence of the pending sync instruction, which follows the service's
// batches (CheckSync checks the instructions).
func CompareView(want, got projections.View) string {
	want.UpdatedAt, got.UpdatedAt = time.Time{}, time.Time{}
	want.SyncSeq, got.SyncSeq = 0, 0
	if !reflect.DeepEqual(want, got) {
		return fmt.Sprintf("%s/%s: service shows %+v, a fresh fold gives %+v", want.Shop, want.SKU, got, want)
	}
	return ""
}

// CompareAlerts compares the alerts the service shows (state=all) with the
// fresh fold's last change of each alert: same ids, state and revision.
func (l *Ledger) CompareAlerts(shop string, got []projections.Alert) []string {
	var problems []string
	seen := map[string]bool{}
	for _, a := range got {
		seen[a.ID] = true
		w, ok := l.Alerts[a.ID]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("alert %s (%s) is not raised by a fresh fold", a.ID, a.Kind))
		case w.State != a.State || w.Rev != a.Rev || w.ExposureFen != a.ExposureFen || w.UnitsShort != a.UnitsShort:
			problems = append(problems, fmt.Sprintf("alert %s: service %s rev %d exposure %d short %d, fold %s rev %d exposure %d short %d",
				a.ID, a.State, a.Rev, a.ExposureFen, a.UnitsShort, w.State, w.Rev, w.ExposureFen, w.UnitsShort))
		}
	}
	for id, a := range l.Alerts {
		if a.Shop == shop && !seen[id] {
			problems = append(problems, fmt.Sprintf("alert %s (%s, %s) of the fold is missing from the service", id, a.Kind, a.State))
		}
	}
	return problems
}

// WaitAlertsPublished waits until the alert stream holds the last change of
// every alert of the fold (Nats-Msg-Id <id>:<rev>), or ctx ends; it returns
// the changes still missing.
func (l *Ledger) WaitAlertsPublished(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	for {
		have, err := alertMsgIDs(ctx, js)
		if err != nil {
			return nil, err
		}
		var missing []string
		for id, a := range l.Alerts {
			if !have[id+":"+strconv.Itoa(a.Rev)] {
				missing = append(missing, fmt.Sprintf("%s:%d (%s %s)", id, a.Rev, a.Kind, a.State))
			}
		}
		if len(missing) == 0 {
			return nil, nil
		}
		select {
		case <-ctx.Done():
			sort.Strings(missing)
			return missing, nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func alertMsgIDs(ctx context.Context, js jetstream.JetStream) (map[string]bool, error) {
	st, err := js.Stream(ctx, transport.AlertStream)
	if err != nil {
		return nil, err
	}
	state := st.CachedInfo().State
	if state.FirstSeq > 1 {
		return nil, fmt.Errorf("the alert stream has dropped messages 1..%d to its limits (MaxBytes %d): size it for the run", state.FirstSeq-1, st.CachedInfo().Config.MaxBytes)
	}
	last := state.LastSeq
	have := map[string]bool{}
	if last == 0 {
		return have, nil
	}
	cons, err := js.OrderedConsumer(ctx, transport.AlertStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	// Ask for no more than the stream holds, so that a fetch never waits
	// out its MaxWait for messages that are not there (deleted ones leave
	// gaps in the sequences).
	var count uint64
	for read := uint64(0); read < last && count < state.Msgs; {
		batch, err := cons.Fetch(int(min(fetchMax, state.Msgs-count)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, _ := m.Metadata()
			read = meta.Sequence.Stream
			have[m.Headers().Get("Nats-Msg-Id")] = true
		}
		if n == 0 {
			return nil, errors.New("alert stream read stalled")
		}
		count += uint64(n)
	}
	return have, nil
}

// Summary says a run's figures in one line for logs and RELIABILITY.md.
func (f Figures) String() string {
	return fmt.Sprintf("acknowledged %d, lost %d, duplicated %d", f.Acknowledged, f.Lost, f.Duplicated)
}

// Join lists problems, at most max of them.
func Join(problems []string, max int) string {
	if len(problems) > max {
		problems = append(problems[:max:max], fmt.Sprintf("… and %d more", len(problems)-max))
	}
	return strings.Join(problems, "\n")
}

// syncWaitMax bounds the wait for the sync targets to settle.
const syncWaitMax = 30 * time.Second

// CheckSync compares the stock sync the service published with the fresh
// fold: once the STOCK_SYNC_TARGETS bucket holds, for every SKU whose listed
// and sellable differ, an instruction with those figures, and no key for
// the others (waiting up to syncWaitMax for the publisher), the stream must
// hold each SKU's instructions once each, in increasing sequence. Problems
// are returned as text.
func (l *Ledger) CheckSync(ctx context.Context, js jetstream.JetStream) []string {
	kv, err := js.KeyValue(ctx, transport.SyncTargetsBucket)
	if err != nil {
		return []string{"sync targets bucket: " + err.Error()}
	}
	deadline := time.Now().Add(syncWaitMax)
	var problems []string
	for {
		problems = l.compareTargets(ctx, kv)
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return append(problems, syncStreamOrder(ctx, js)...)
}

// compareTargets checks every folded SKU's bucket key against its figures.
func (l *Ledger) compareTargets(ctx context.Context, kv jetstream.KeyValue) []string {
	var problems []string
	for k, s := range l.SKUs {
		v := s.View()
		_, due := projections.InstructionOf(&v)
		e, err := kv.Get(ctx, transport.ViewKey(k.Shop, k.SKU))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) && due:
			problems = append(problems, fmt.Sprintf("%s/%s: %s, listed %d sellable %d and no sync target", k.Shop, k.SKU, v.Status, v.Listed, v.Sellable))
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s/%s: sync target: %v", k.Shop, k.SKU, err))
		case !due:
			problems = append(problems, fmt.Sprintf("%s/%s: %s, listed %d sellable %d: no instruction due, and a sync target is left: %s", k.Shop, k.SKU, v.Status, v.Listed, v.Sellable, e.Value()))
		default:
			var in projections.SyncInstruction
			if err := json.Unmarshal(e.Value(), &in); err != nil || in.Listed != v.Listed || in.Sellable != v.Sellable {
				problems = append(problems, fmt.Sprintf("%s/%s: sync target %s, the fold has listed %d sellable %d", k.Shop, k.SKU, e.Value(), v.Listed, v.Sellable))
			}
		}
	}
	return problems
}

// syncStreamOrder reads STOCK_SYNC: each SKU's instructions must come once
// each, in increasing sequence (none lost to a reorder, none twice).
func syncStreamOrder(ctx context.Context, js jetstream.JetStream) []string {
	st, err := js.Stream(ctx, transport.SyncStream)
	if err != nil {
		return []string{"sync stream: " + err.Error()}
	}
	last := map[string]uint64{}
	var problems []string
	for seq := st.CachedInfo().State.FirstSeq; seq <= st.CachedInfo().State.LastSeq && seq > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return append(problems, fmt.Sprintf("sync stream at %d: %v", seq, err))
		}
		var in projections.SyncInstruction
		if err := json.Unmarshal(m.Data, &in); err != nil {
			return append(problems, fmt.Sprintf("sync stream at %d: %v", seq, err))
		}
		k := in.Shop + "/" + in.SKU
		if prev, ok := last[k]; ok && in.Seq <= prev {
			problems = append(problems, fmt.Sprintf("%s: instruction of seq %d after one of seq %d (twice, or out of order)", k, in.Seq, prev))
		}
		last[k] = in.Seq
	}
	return problems
}
