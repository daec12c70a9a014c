//go:build race

package ledger

// raceEnabled: the race detector is on, and allocation counts are not the
// program's.
const raceEnabled = true
