// Package consumers keeps the read model (package projections) equal to the
// event stream, each event applied exactly once. A Projector reads the
// stream from a durable JetStream pull consumer, folds it in batches and
// commits each batch with its last stream sequence in one transaction
// before it acknowledges the batch, so that a redelivery changes nothing;
// what it cannot apply it dead-letters, and it never stalls on it. After
// each commit it wakes the callers waiting for a sequence (min_seq) and
// publishes what changed for dashboards: the SKU views (on their subjects
// and in the view bucket) and the alert changes of the store's outbox. It
// also sweeps for orders past their ship promise. Partitioned runs the
// projectors of a partitioned stream, one per partition, shared by leases
// among the instances that fold it into one store.
//
// FoldAsOf folds one SKU's history as a projector would, to answer what its
// state was at a past moment.
package consumers
