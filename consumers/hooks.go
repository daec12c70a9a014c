package consumers

import (
	"context"
	"time"

	"stockledger/ledger"
)

// Hooks let the service observe the projector (metrics) without this package
// knowing how figures are kept. Nil fields are skipped. They are called on
// the projector's goroutine and must return quickly.
type Hooks struct {
	// Committed is called after each batch of events is committed.
	Committed func(BatchStats)
	// DeadLettered is called for each message sent to the dead-letter stream.
	DeadLettered func()
}

// BatchStats describes one committed batch of events.
type BatchStats struct {
	// Messages is the batch size: every message of the batch, applied,
	// refused or redelivered.
	Messages int
	// Applied counts the events applied, by type.
	Applied map[ledger.Type]int
	// CommitTook is how long the store's write of the batch took, retries
	// included (the next batch was being folded meanwhile).
	CommitTook time.Duration
	// AppliedSeq is the checkpoint after the batch.
	AppliedSeq uint64
}

// commitListener is told of every write that committed, in commit order,
// before its batch is acknowledged: the Committed hook, the min_seq waiters
// (appliedSeq), the views (viewSubjects, viewBucket) and the alert outbox
// (alertPublisher). It is called on the fold loop's goroutine and must
// return quickly: the next batch's write waits for it.
type commitListener interface {
	committed(ctx context.Context, f *flight)
}

// committed calls the Committed hook for a batch of events (not a sweep).
func (h Hooks) committed(_ context.Context, f *flight) {
	if f.stats == nil || h.Committed == nil {
		return
	}
	f.stats.CommitTook, f.stats.AppliedSeq = f.took, f.lastSeq
	h.Committed(*f.stats)
}
