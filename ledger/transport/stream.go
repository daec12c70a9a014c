package transport

import (
	"context"
	"fmt"
	"stockledger/ledger"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names.
const (
	EventStream = "STOCK_EVENTS"
	AlertStream = "STOCK_ALERTS"
	DeadStream  = "STOCK_DEAD"
	SyncStream  = "STOCK_SYNC"
)

// SyncMaxAge is how long the sync stream keeps an instruction: an adapter
// down longer than that resumes from the STOCK_SYNC_TARGETS bucket.
const SyncMaxAge = 7 * 24 * time.Hour

// Duplicate windows. The stream remembers each Nats-Msg-Id for its window,
// in server memory, so a longer window costs memory at flash-sale rates.
// No figure depends on the event stream's window: the fold applies every
// natural key once, however late its re-send (ledger.Event.Key); the window
// only keeps repeats out of the stream.
const (
	// DefaultEventDuplicateWindow is the window of the event and alert
	// streams when StreamOptions.DuplicateWindow is zero: measured with
	// feedsim bench (BENCHMARKS.md), 2 minutes let the server's live heap
	// grow past a million events, 30 s held it flat at ~10k events/s (a
	// third of a flash sale's rate), 10 s held it flat at the lowest
	// figure. The publishers' own retries and the alert outbox's re-sends
	// after a crash come within it; a later repeat is stored twice and
	// applied once.
	DefaultEventDuplicateWindow = 10 * time.Second
	// DuplicateWindow is the window of the dead-letter stream, whose
	// messages are few.
	DuplicateWindow = 2 * time.Minute
)

// Header names the ledger sets on messages it publishes.
const (
	// HeaderDeadReason says why a message was dead-lettered.
	HeaderDeadReason = "Ledger-Dead-Reason"
	// HeaderDeadSubject and HeaderDeadSeq name the original message.
	HeaderDeadSubject = "Ledger-Dead-Subject"
	HeaderDeadSeq     = "Ledger-Dead-Seq"
	// HeaderCheckpoint on an alert message is the event stream sequence the
	// projector had applied when it published the alert change.
	HeaderCheckpoint = "Ledger-Checkpoint"
	// HeaderPublishedThrough on an alert message is a sequence S of the
	// event stream such that the alert changes of every event up to S were
	// on the alert stream, acknowledged, before this message was sent. A
	// read model rebuilt from the stream passes over the changes of its
	// batches that end at or below the last message's S.
	HeaderPublishedThrough = "Ledger-Published-Through"
)

// StreamOptions are the deployment choices of the streams.
type StreamOptions struct {
	// Replicas is 1 on one server, 3 in a cluster.
	Replicas int
	// EventMaxBytes bounds the event stream. The stream discards nothing when
	// full: it refuses new events, so that no ledger entry is ever dropped
	// silently. Zero means DefaultEventMaxBytes. The alert stream gets a
	// quarter of it, the dead-letter stream a sixteenth. JetStream reserves
	// these bounds against the server's storage at stream creation.
	EventMaxBytes int64
	// DuplicateWindow is the duplicate window of the event and alert
	// streams; zero means DefaultEventDuplicateWindow.
	DuplicateWindow time.Duration
	// Partitions splits the event stream by shop: with n ≥ 2 the stream
	// stores stock.events.<shop>.<sku> as stock.events.<p>.<shop>.<sku>,
	// p = partition(n, shop) (see StoredEventSubject). 0 or 1 stores
	// subjects as published. The count is fixed for the life of the stream:
	// see DEPLOY.md before changing it.
	Partitions int
}

// DefaultEventMaxBytes is the default bound of the event stream: 8 GiB,
// about 40 million events of 200 bytes.
const DefaultEventMaxBytes = 8 << 30

func (o StreamOptions) eventDuplicates() time.Duration { // of the event and alert streams
	if o.DuplicateWindow <= 0 {
		return DefaultEventDuplicateWindow
	}
	return o.DuplicateWindow
}

func (o StreamOptions) eventMaxBytes() int64 {
	if o.EventMaxBytes <= 0 {
		return DefaultEventMaxBytes
	}
	return o.EventMaxBytes
}

// EventStreamConfig is the STOCK_EVENTS stream: the ledger itself. File
// storage, kept forever, append-only (no deletes, no purges: corrections are
// new entries), duplicate window for idempotent publishing.
func EventStreamConfig(o StreamOptions) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              EventStream,
		Description:       "stock ledger: every stock change of every SKU",
		Subjects:          []string{EventSubjectRoot + ".>"},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardNew,
		MaxAge:            0,
		MaxBytes:          o.eventMaxBytes(),
		MaxMsgs:           -1,
		MaxMsgsPerSubject: -1,
		MaxMsgSize:        ledger.MaxEventBytes,
		Duplicates:        o.eventDuplicates(),
		Replicas:          replicas(o),
		DenyDelete:        true,
		DenyPurge:         true,
		AllowDirect:       true,
		SubjectTransform:  eventTransform(o),
		// Atomic batches let a publisher amortise the fsync of sync-always.
		AllowAtomicPublish: true,
	}
}

func eventTransform(o StreamOptions) *jetstream.SubjectTransformConfig {
	if o.Partitions < 2 {
		return nil
	}
	return partitionTransform(o.Partitions)
}

// AlertStreamConfig is the STOCK_ALERTS stream: every change of every alert,
// kept 90 days. Alerts are derived, so old ones may age out.
func AlertStreamConfig(o StreamOptions) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        AlertStream,
		Description: "stock ledger: alert changes",
		Subjects:    []string{AlertSubjectRoot + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      90 * 24 * time.Hour,
		MaxBytes:    o.eventMaxBytes() / 4,
		MaxMsgs:     -1,
		MaxMsgSize:  16 << 10,
		Duplicates:  o.eventDuplicates(),
		Replicas:    replicas(o),
		AllowDirect: true,
	}
}

// DeadStreamConfig is the STOCK_DEAD stream: messages the projector could not
// apply, each with the reason, kept 30 days for an operator to look at.
func DeadStreamConfig(o StreamOptions) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        DeadStream,
		Description: "stock ledger: messages refused by the projector, with the reason",
		Subjects:    []string{DeadSubjectRoot + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      30 * 24 * time.Hour,
		MaxBytes:    o.eventMaxBytes() / 16,
		MaxMsgs:     -1,
		MaxMsgSize:  1 << 20,
		Duplicates:  DuplicateWindow,
		Replicas:    replicas(o),
		// A SKU's history reads its refusals by subject with direct gets.
		AllowDirect: true,
	}
}

func replicas(o StreamOptions) int {
	if o.Replicas < 1 {
		return 1
	}
	return o.Replicas
}

// SyncStreamConfig is the STOCK_SYNC stream: every stock sync instruction,
// kept 7 days; each SKU's latest is also in SyncTargetsBucket. Derived, so
// old ones may age out.
func SyncStreamConfig(o StreamOptions) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        SyncStream,
		Description: "stock ledger: stock sync instructions to the platforms",
		Subjects:    []string{SyncSubjectRoot + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      SyncMaxAge,
		MaxBytes:    o.eventMaxBytes() / 16,
		MaxMsgs:     -1,
		MaxMsgSize:  4 << 10,
		Duplicates:  o.eventDuplicates(),
		Replicas:    replicas(o),
		AllowDirect: true,
	}
}

// EnsureStreams creates the four streams and the sync targets bucket, or
// updates them to the configuration above.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	for _, cfg := range []jetstream.StreamConfig{EventStreamConfig(o), AlertStreamConfig(o), DeadStreamConfig(o), SyncStreamConfig(o)} {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("create or update stream %s: %w", cfg.Name, err)
		}
	}
	_, err := EnsureSyncTargets(ctx, js, o)
	return err
}
