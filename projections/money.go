package projections

// Compensation bounds of the platform, in fen (1 yuan = 100 fen).
const (
	lateFloorFen      = 500   // 5 yuan
	lateCeilingFen    = 3000  // 30 yuan
	unshippedFloorFen = 500   // 5 yuan
	unshippedCeilFen  = 20000 // 200 yuan
)

// LateCompensationFen is what the platform charges the merchant for an order
// of value v fen shipped late: 10% of v, at least 5 and at most 30 yuan,
// rounded down to whole fen.
func LateCompensationFen(v int64) int64 { return clamp(v/10, lateFloorFen, lateCeilingFen) }

// UnshippedCompensationFen is what the platform charges for an order of value
// v fen never shipped: 30% of v, at least 5 and at most 200 yuan, rounded down
// to whole fen.
func UnshippedCompensationFen(v int64) int64 {
	return clamp(3*v/10, unshippedFloorFen, unshippedCeilFen)
}

func clamp(v, lo, hi int64) int64 { return max(lo, min(v, hi)) }
