package projections

import "fmt"

// Compensation bounds of the platform, in fen (1 yuan = 100 fen).
const (
	lateFenMin      = 500   // 5 yuan
	lateFenMax      = 3000  // 30 yuan
	unshippedFenMin = 500   // 5 yuan
	unshippedFenMax = 20000 // 200 yuan
)

// LateCompensationFen is what the platform charges the merchant for an order
// line of value v fen shipped late: 10% of v, at least 5 and at most 30 yuan,
// rounded down to whole fen.
func LateCompensationFen(v int64) int64 { return clamp(v/10, lateFenMin, lateFenMax) }

// UnshippedCompensationFen is what the platform charges for an order line of
// value v fen never shipped: 30% of v, at least 5 and at most 200 yuan,
// rounded down to whole fen.
func UnshippedCompensationFen(v int64) int64 {
	return clamp(3*v/10, unshippedFenMin, unshippedFenMax)
}

func clamp(v, lo, hi int64) int64 { return max(lo, min(v, hi)) }

// Yuan formats an amount of fen as yuan for people: 8910 → "¥89.10",
// -5 → "-¥0.05".
func Yuan(fen int64) string {
	sign := ""
	if fen < 0 {
		sign, fen = "-", -fen
	}
	return fmt.Sprintf("%s¥%d.%02d", sign, fen/100, fen%100)
}
