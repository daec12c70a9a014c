package projections

import (
	"slices"
	"time"
)

// slotIDsMax bounds the event ids a slot remembers for its time: settings
// of one slot that share an `at` to the instant are rare; past the bound the
// oldest id is forgotten, and a late re-send of that one event would apply
// again.
const slotIDsMax = 8

// Slot is a last-writer-wins register's clock: the `at` of the setting that
// holds it, and the ids of the events applied at that time. A setting older
// than the slot changes nothing, so that a late re-send never undoes a newer
// setting; at an equal time stream order decides, and an event already
// applied (the same id) is not applied again.
type Slot struct {
	At  time.Time `json:"at,omitzero"`
	IDs []string  `json:"ids,omitempty"`
}

// wins reports whether a setting event (id, at) takes the slot; if so, the
// slot records it.
func (s *Slot) wins(id string, at time.Time) bool {
	switch {
	case at.Before(s.At):
		return false
	case at.Equal(s.At):
		if slices.Contains(s.IDs, id) {
			return false
		}
		if len(s.IDs) == slotIDsMax {
			s.IDs = slices.Delete(s.IDs, 0, 1)
		}
		s.IDs = append(s.IDs, id)
	default:
		s.At, s.IDs = at.UTC(), []string{id}
	}
	return true
}

// stale reports whether a setting at `at` would lose the slot (without
// recording anything).
func (s *Slot) stale(id string, at time.Time) bool {
	return at.Before(s.At) || (at.Equal(s.At) && slices.Contains(s.IDs, id))
}

func (s Slot) clone() Slot { return Slot{At: s.At, IDs: slices.Clone(s.IDs)} }
