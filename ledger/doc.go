// Package ledger is the vocabulary of the stock ledger: the events a shop's
// stock changes through, their validation and JSON codec, the NATS subjects and
// JetStream streams they live on, the idempotent publisher an order feed uses,
// and the command path that enforces the listing rule with optimistic
// concurrency.
//
// The package has no database imports; the read model lives in projections.
package ledger
