// Package ledger is the vocabulary of the stock ledger: the events a shop's
// stock changes through, their validation, their strict JSON codec, and the
// seed's listing rule. It does no I/O and imports no transport or database
// package: the NATS side lives in ledger/transport, the read model in
// projections.
package ledger
