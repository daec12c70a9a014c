package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrNotFound is returned by reads of a SKU no event has named.
var ErrNotFound = errors.New("not found")

// ErrCheckpointMoved is returned by Commit when the stored checkpoint is not
// the batch's PrevSeq: another projector wrote in between. Nothing was
// written; the caller must reload its state.
var ErrCheckpointMoved = errors.New("checkpoint moved")

// Batch is what one projector transaction writes: the state of every SKU the
// batch changed (with the orders they marked dirty and their open alerts),
// the alert changes in order, and the new checkpoint.
type Batch struct {
	// Projector names the checkpoint (one per projector partition).
	Projector string
	// PrevSeq is the checkpoint the batch was folded on; LastSeq the one it
	// leaves. A sweep batch (time passing, no event) has LastSeq == PrevSeq.
	PrevSeq, LastSeq uint64
	// SKUs are the changed SKUs. Their dirty lines and fresh keys are
	// written; the caller
	// clears the dirty marks once Stage returned.
	SKUs []*SKU
	// Views, when not nil, holds SKUs[i].View() at index i, worked out once
	// by the caller; nil means the store works them out.
	Views []View
	// Alerts are the alert changes of the batch, oldest first. The store
	// keeps each alert's latest state, and appends every change to its
	// outbox for publishing.
	Alerts []Alert
	// Shops are the shops whose health the batch changed.
	Shops []*Shop
	// Sync are the batch's stock sync instructions (SKU.Sync), appended
	// to the sync outbox for publishing.
	Sync []SyncInstruction
}

// SKUKey names one SKU.
type SKUKey struct {
	Shop string `json:"shop"`
	SKU  string `json:"sku"`
}

// LineKey names one order line: (shop, sku, order_id).
type LineKey struct {
	Shop, SKU, OrderID string
}

// KeyRef names one natural key applied to a SKU (a restock's).
type KeyRef struct {
	Shop, SKU, Key string
}

// CommitFunc writes a staged batch (see Writer.Stage).
type CommitFunc func(ctx context.Context) error

// OutboxSync is a sync instruction committed but not yet known to be
// published: the message as it goes out, and what the publisher needs to
// route it, as written at Stage.
type OutboxSync struct {
	ID int64
	// Shop, SKU, Seq and Key are the instruction's: its subject and bucket
	// key, the sequence a rebuild compares with the stream's, and its
	// Nats-Msg-Id.
	Shop, SKU string
	Seq       uint64
	Key       string
	// Clear carries SyncInstruction.Clear, which its JSON leaves out.
	Clear bool
	// Data is the instruction as json.Marshal encoded it when the batch was
	// staged: the message published and put in the bucket, byte for byte
	// (not sent for a clear).
	Data []byte
	// Checkpoint is the batch's LastSeq.
	Checkpoint uint64
}

// NewOutboxSync encodes in for the sync outbox of a batch that leaves
// checkpoint; the store assigns ID.
func NewOutboxSync(in *SyncInstruction, checkpoint uint64) (OutboxSync, error) {
	data, err := json.Marshal(in)
	if err != nil {
		return OutboxSync{}, fmt.Errorf("encode sync instruction %s: %w", in.Key, err)
	}
	return OutboxSync{Shop: in.Shop, SKU: in.SKU, Seq: in.Seq, Key: in.Key, Clear: in.Clear, Data: data, Checkpoint: checkpoint}, nil
}

// ShopHealth is what GET /v1/shops/{shop} answers: the shop's totals.
type ShopHealth struct {
	Shop string `json:"shop"`
	SKUs int64  `json:"skus"`
	// OpenLines … AtRiskLines count the shop's open order lines: all, due
	// to ship within 24 hours of the read, late, unserved, and late or
	// unserved.
	OpenLines    int64   `json:"open_lines"`
	DueWithin24h int64   `json:"due_within_24h"`
	LateLines    int64   `json:"late_lines"`
	Unserved     int64   `json:"unserved_lines"`
	AtRiskLines  int64   `json:"at_risk_lines"`
	ExposureFen  int64   `json:"exposure_fen"`
	AtRiskPct    float64 `json:"at_risk_pct"`
	// LastSeq is the last event that changed the shop's health.
	LastSeq uint64 `json:"last_seq"`
}

// dueWindow is how far ahead of a read ShopHealth.DueWithin24h looks.
const dueWindow = 24 * time.Hour

// OutboxAlert is an alert change committed but not yet known to be
// published: the message as it goes out, and what the publisher needs to
// route it, as written at Stage.
type OutboxAlert struct {
	ID int64
	// AlertID and Rev are the change's alert id and revision (its
	// Nats-Msg-Id is <alert id>:<rev>); Shop and Kind its subject's.
	AlertID string
	Rev     int
	Shop    string
	Kind    AlertKind
	// Data is the alert change as json.Marshal encoded it when the batch
	// was staged: the message published, byte for byte.
	Data []byte
	// Checkpoint is the batch's LastSeq.
	Checkpoint uint64
}

// NewOutboxAlert encodes a for the outbox of a batch that leaves
// checkpoint; the store assigns ID.
func NewOutboxAlert(a *Alert, checkpoint uint64) (OutboxAlert, error) {
	data, err := json.Marshal(a)
	if err != nil {
		return OutboxAlert{}, fmt.Errorf("encode alert %s: %w", a.ID, err)
	}
	return OutboxAlert{AlertID: a.ID, Rev: a.Rev, Shop: a.Shop, Kind: a.Kind, Data: data, Checkpoint: checkpoint}, nil
}

// AlertFilter selects alerts in reads.
type AlertFilter struct {
	Shop string
	// State is AlertOpen, AlertResolved, or "" for all.
	State AlertState
	// Limit bounds the answer; zero means MaxReadRows.
	Limit int
}

// MaxReadRows bounds every list a store read returns.
const MaxReadRows = 10000

// Reader is what the HTTP API reads of the read model. Every read answers
// from the last commit.
type Reader interface {
	// SKU returns one SKU's view, or ErrNotFound.
	SKU(ctx context.Context, shop, sku string) (View, error)
	// SKUs returns a shop's SKU views ordered by sku, at most MaxReadRows.
	SKUs(ctx context.Context, shop string) ([]View, error)
	// Alerts returns alerts ordered by exposure (largest first), then raised_at.
	Alerts(ctx context.Context, f AlertFilter) ([]Alert, error)
	// ShopHealth returns a shop's totals, lines due counted against now;
	// ErrNotFound for a shop no event has named.
	ShopHealth(ctx context.Context, shop string, now time.Time) (ShopHealth, error)
	// OpenAlertTotals returns the open alerts of all shops by kind, for
	// metrics.
	OpenAlertTotals(ctx context.Context) (map[AlertKind]AlertTotal, error)
	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
}

// Writer is what the projector needs of the read model: the state it folds
// on and the atomic write of each batch.
type Writer interface {
	// Checkpoint returns the last stream sequence the named projector
	// committed, 0 when none.
	Checkpoint(ctx context.Context, projector string) (uint64, error)
	// LoadSKU returns the state of a SKU as last committed, with its open
	// alerts and the lines the fold keeps in memory (open and early ones;
	// see SKU.Lines), or nil and no error when the SKU is unknown.
	LoadSKU(ctx context.Context, shop, sku string) (*SKU, error)
	// LoadSKUs is LoadSKU for many SKUs at once, read from one commit: the
	// states of the keys the store holds (unknown ones are left out).
	LoadSKUs(ctx context.Context, keys []SKUKey) (map[SKUKey]*SKU, error)
	// LoadShop returns a shop's health as last committed, with its open
	// fulfilment_risk alert, or nil and no error for a shop never seen.
	LoadShop(ctx context.Context, shop string) (*Shop, error)
	// KnownLines returns, of the lines named by keys, those the store
	// holds, whatever their state. Keys it does not hold are left out.
	KnownLines(ctx context.Context, keys []LineKey) (map[LineKey]Line, error)
	// KnownKeys returns, of the natural keys named, those the store holds
	// as applied (see SKU.FreshKeys).
	KnownKeys(ctx context.Context, keys []KeyRef) (map[KeyRef]bool, error)
	// Stage reads batch b (the SKUs' states, dirty lines and fresh keys, the views,
	// the alerts) and returns its write: calling it commits b atomically,
	// all of it or none of it, and returns ErrCheckpointMoved when the
	// stored checkpoint is not b.PrevSeq. The write may be called again
	// after a failure. Nothing of b is read after Stage returns, so the
	// caller may go on changing the same SKUs while the write runs: the
	// projector folds one batch while the one before is being committed.
	Stage(b *Batch) (CommitFunc, error)
	// DueSKUs returns up to limit SKUs whose stored NextDue is at or before
	// now: candidates for the ship-promise sweep. NextDue is a lower bound,
	// so a candidate may have nothing due; the sweep commits its advanced
	// NextDue so that it stops being returned.
	DueSKUs(ctx context.Context, now time.Time, limit int) ([]SKUKey, error)
}

// Outbox holds the alert changes and sync instructions committed and not
// yet known to be published: each batch's are added in its transaction, and
// the publishers remove them once their stream has them.
type Outbox interface {
	// PendingAlerts returns up to limit outbox entries, oldest first.
	PendingAlerts(ctx context.Context, limit int) ([]OutboxAlert, error)
	// DeletePendingAlerts removes outbox entries with ID ≤ upTo.
	DeletePendingAlerts(ctx context.Context, upTo int64) error
	// PendingSync returns up to limit sync outbox entries, oldest first.
	PendingSync(ctx context.Context, limit int) ([]OutboxSync, error)
	// DeletePendingSync removes sync outbox entries with ID ≤ upTo.
	DeletePendingSync(ctx context.Context, upTo int64) error
}

// Store is a whole read model: what the API reads, what the projector
// writes, and the outbox. Implementations are safe for concurrent use: one
// projector writes while HTTP handlers read.
type Store interface {
	Reader
	Writer
	Outbox
	// Close releases the store's resources.
	Close()
}

// Commit stages batch b on w and writes it at once (see Writer.Stage).
func Commit(ctx context.Context, w Writer, b *Batch) error {
	write, err := w.Stage(b)
	if err != nil {
		return err
	}
	return write(ctx)
}
