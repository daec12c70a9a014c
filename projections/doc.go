// Package projections folds ledger events into each SKU's current state: the
// platform's listed figure beside the real stock and supplier capacity, open
// orders, and the alerts with the money at risk. The fold (SKU.Apply,
// SKU.Advance) is pure: no I/O, and time only from events or from the clock
// value a caller passes in. The read model is kept behind the Store
// interface, with a Postgres and an in-memory implementation.
package projections
