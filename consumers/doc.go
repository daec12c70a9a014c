// Package consumers runs the JetStream consumers that keep the read model:
// the projector, a durable pull consumer that folds events in batches and
// commits each batch with its last stream sequence in one transaction before
// it acknowledges, dead-letters what it cannot apply, publishes view changes
// and alert changes for dashboards, and sweeps for orders that pass their
// ship promise.
package consumers
