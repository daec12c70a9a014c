//go:build !race

package ledger

// raceEnabled: the race detector is off.
const raceEnabled = false
