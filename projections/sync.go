package projections

import (
	"strconv"

	"github.com/google/uuid"
)

// SyncEventNamespace is the UUID namespace of the ids of stock_sets that
// apply sync instructions (SyncEventID).
const SyncEventNamespace = "6f1c2d3e-8a4b-4c5d-9e6f-7a8b9c0d1e2f"

// SyncInstruction tells a platform adapter what a SKU's platform figure
// should be: the SKU's listed (what the platform shows, as the ledger knows
// it) and sellable (what it should show) differ. Delta is sellable − listed:
// an increment-only platform applies it, a full-set platform sets Sellable.
// Seq is the last event the instruction reflects; Key (sync:<shop>:<sku>:
// <seq>) is its idempotency key and Nats-Msg-Id. A newer instruction of the
// SKU replaces an older one.
type SyncInstruction struct {
	Shop     string `json:"shop"`
	SKU      string `json:"sku"`
	Listed   int64  `json:"listed"`
	Sellable int64  `json:"sellable"`
	Delta    int64  `json:"delta"`
	Seq      uint64 `json:"seq"`
	Key      string `json:"key"`
	// Clear is true when listed and sellable agree again after an
	// instruction: the SKU's pending target is withdrawn. Nothing is
	// published for it on the instruction stream.
	Clear bool `json:"-"`
}

// SyncKey is the key of the instruction of a SKU at stream sequence seq.
func SyncKey(shop, sku string, seq uint64) string {
	return "sync:" + shop + ":" + sku + ":" + strconv.FormatUint(seq, 10)
}

// SyncEventID returns the id of the stock_set that applies the instruction
// of key: UUIDv5(SyncEventNamespace, key), the same for every attempt, so
// that a re-sent stock_set is one event. Adapters (stockctl sync, feedsim's
// platform simulator) share it.
func SyncEventID(key string) string {
	return uuid.NewSHA1(uuid.MustParse(SyncEventNamespace), []byte(key)).String()
}

// SyncState is what a SKU last instructed, so that an instruction goes out
// only when listed or sellable moved since; Seq is the sequence the
// instruction reflects (its key's).
type SyncState struct {
	Pending  bool   `json:"pending,omitempty"`
	Listed   int64  `json:"listed,omitempty"`
	Sellable int64  `json:"sellable,omitempty"`
	Seq      uint64 `json:"seq,omitempty"`
}

// wantsSync reports whether a SKU's figures call for an instruction: it is
// listed (an unlisted SKU is not on the platform, a delisted one is not for
// sale there) and the platform's figure differs from what it should show.
func wantsSync(status Status, listed, sellable int64) bool {
	return status == StatusListed && listed != sellable
}

// InstructionOf returns the instruction a SKU's state calls for now, as the
// read side answers it: the one the projector published last, key and all.
// ok is false when none is due (see wantsSync).
func InstructionOf(v *View) (SyncInstruction, bool) {
	if !wantsSync(v.Status, v.Listed, v.Sellable) {
		return SyncInstruction{}, false
	}
	seq := v.SyncSeq
	if seq == 0 { // a state folded before instructions carried their sequence
		seq = v.LastSeq
	}
	return SyncInstruction{Shop: v.Shop, SKU: v.SKU, Listed: v.Listed, Sellable: v.Sellable,
		Delta: v.Sellable - v.Listed, Seq: seq, Key: SyncKey(v.Shop, v.SKU, seq)}, true
}

// Sync returns the instruction the SKU's state calls for since the last one
// it gave, and records it: an instruction when one is due (see wantsSync)
// and listed or sellable moved since the last instruction; a clear when none
// is due any more after one; false when nothing is to be said. The projector
// calls it for each SKU a batch changed, before committing the batch: the
// record is part of the SKU's stored state.
func (s *SKU) Sync() (SyncInstruction, bool) {
	listed, sellable := s.Listed, s.Sellable()
	switch {
	case !wantsSync(s.Status, listed, sellable) && !s.Synced.Pending:
		return SyncInstruction{}, false
	case !wantsSync(s.Status, listed, sellable):
		s.Synced = SyncState{}
		return SyncInstruction{Shop: s.Shop, SKU: s.SKU, Listed: listed, Sellable: sellable, Seq: s.LastSeq,
			Key: SyncKey(s.Shop, s.SKU, s.LastSeq), Clear: true}, true
	case s.Synced.Pending && s.Synced.Listed == listed && s.Synced.Sellable == sellable:
		return SyncInstruction{}, false
	}
	s.Synced = SyncState{Pending: true, Listed: listed, Sellable: sellable, Seq: s.LastSeq}
	return SyncInstruction{Shop: s.Shop, SKU: s.SKU, Listed: listed, Sellable: sellable, Delta: sellable - listed,
		Seq: s.LastSeq, Key: SyncKey(s.Shop, s.SKU, s.LastSeq)}, true
}
