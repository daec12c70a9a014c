// Package transport puts the ledger on NATS JetStream: the subjects events,
// views, alerts and dead letters travel on, the streams and key-value bucket
// that hold them (and their partitioning by shop), the idempotent publisher
// an order feed uses, the command path that enforces the listing rule with
// optimistic concurrency, and the reader of one SKU's history.
package transport
