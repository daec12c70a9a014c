package ledger

import (
	"strings"
	"time"
	"unicode/utf8"
)

// timeSlots are the time members, in the order badTime checks them.
var timeSlots = [3]int{fAt, fDeliverBy, fShipBy}

// timeSlot is the index of the time member f in timeSlots.
func timeSlot(f int) int {
	switch f {
	case fAt:
		return 0
	case fDeliverBy:
		return 1
	}
	return 2
}

// eventDecoder reads one event in one pass, without reflection: it checks
// the syntax as encoding/json does, matches keys to members as it does
// (case-insensitively) and stores values as it would. When anything is
// wrong it keeps reading to the end of the value and notes the first
// problem of each class; explain then ranks them as the decoder before it
// did (see DecodeEvent). The texts of an event's strings become one string
// in finish, so an event costs one allocation for its strings and one for
// its optional numbers and times.
type eventDecoder struct {
	r      reader
	start  int  // where the value starts, after white space
	object bool // the value is an object

	seen  uint32            // members given
	has   uint32            // members holding a value (not null)
	esc   uint32            // string members holding escapes
	strs  [numFields][]byte // the string members, quotes included
	ints  [numFields]int64  // the number members
	times [3]time.Time      // the time members, by timeSlot

	irregular bool      // a duplicate member or bytes that are not UTF-8
	abort     error     // the first time that did not parse
	badTimes  [3][]byte // each time member that did not parse
	first     saved     // the first unknown member or value of a wrong type
}

// optionalBox holds the optional numbers and times of one event: one
// allocation serves every pointer of Event.
type optionalBox struct {
	ints  [4]int64
	times [2]time.Time
}

// decode reads one value from the start of d.r.data.
func (d *eventDecoder) decode() {
	r := &d.r
	r.space()
	d.start = r.i
	switch r.peek() {
	case '{':
		d.object = true
		r.depth = 1
		r.i++
		r.object(d.member)
		r.depth = 0
	case 'n':
		r.value() // null: an event with nothing set
	default:
		if kind := r.value(); !r.failed {
			d.save(saved{field: -2, kind: kind})
		}
	}
}

// clean reports whether the value read decodes to an event with no
// problem at all.
func (d *eventDecoder) clean() bool {
	return !d.r.failed && !d.irregular && d.abort == nil && !d.first.set
}

func (d *eventDecoder) save(s saved) {
	if !d.first.set {
		d.first = s
		d.first.set = true
	}
}

// member reads the value of the member key (with its quotes).
func (d *eventDecoder) member(key []byte) {
	r := &d.r
	f := d.field(key, r.esc, r.high)
	start := r.i
	r.high = false
	kind := r.value()
	if r.failed {
		return
	}
	raw := r.data[start:r.i]
	if r.high && !utf8.Valid(raw) {
		d.irregular = true
	}
	r.high = false
	switch {
	case f < 0:
		d.save(saved{field: -1, key: key})
	case d.seen&(1<<f) != 0:
		d.irregular = true
	default:
		d.seen |= 1 << f
		d.store(f, kind, raw)
	}
}

// field returns the member key names, or -1.
func (d *eventDecoder) field(key []byte, esc, high bool) int {
	if high && !utf8.Valid(key) {
		d.irregular = true
	}
	var tmp [foldedKeyMax]byte
	folded, ok := foldKeyInto(&tmp, key, esc, high)
	if !ok {
		return -1
	}
	return fieldByName(folded)
}

// store keeps the value raw, of JSON kind kind, of member f.
func (d *eventDecoder) store(f int, kind valueKind, raw []byte) {
	switch eventFields[f].kind {
	case fieldString:
		switch kind {
		case kindString:
			d.storeString(f, raw)
		case kindNull:
		default:
			d.save(saved{field: f, kind: kind})
		}
	case fieldInt, fieldIntPtr:
		switch kind {
		case kindNumber:
			n, ok := parseInt(raw)
			if !ok {
				d.save(saved{field: f, kind: kind, raw: raw})
				return
			}
			d.ints[f] = n
			d.has |= 1 << f
		case kindNull:
		default:
			d.save(saved{field: f, kind: kind})
		}
	default:
		d.storeTime(f, kind, raw)
	}
}

func (d *eventDecoder) storeString(f int, raw []byte) {
	d.strs[f] = raw
	if d.r.esc {
		d.esc |= 1 << f
	}
	d.has |= 1 << f
}

// text returns the texts of the string members in one string, and where
// each lies in it. Unquoting shortens a string (its bytes are UTF-8 when
// the event is clean), so its raw length bounds the whole.
func (d *eventDecoder) text() (string, [numFields][2]int) {
	var at [numFields][2]int
	size := 0
	for f := range numFields {
		size += len(d.strs[f])
	}
	var b strings.Builder
	b.Grow(size)
	for f, raw := range d.strs {
		if raw == nil {
			continue
		}
		from := b.Len()
		if d.esc&(1<<f) != 0 {
			var tmp [256]byte
			b.Write(appendUnquoted(tmp[:0], raw))
		} else {
			b.Write(raw[1 : len(raw)-1])
		}
		at[f] = [2]int{from, b.Len()}
	}
	return b.String(), at
}

// storeTime parses a time as time.Time's UnmarshalJSON does (null leaves
// it unset).
func (d *eventDecoder) storeTime(f int, kind valueKind, raw []byte) {
	if kind == kindNull {
		return
	}
	slot := timeSlot(f)
	if err := d.times[slot].UnmarshalJSON(raw); err != nil {
		if d.abort == nil {
			d.abort = err
		}
		d.badTimes[slot] = raw
		return
	}
	d.has |= 1 << f
}

// finish builds the event from what decode stored.
func (d *eventDecoder) finish() Event {
	var e Event
	text, at := d.text()
	str := func(f int) string { return text[at[f][0]:at[f][1]] }
	e.ID, e.Type, e.Shop, e.SKU = str(fID), Type(str(fType)), str(fShop), str(fSKU)
	e.Title, e.SalesForm = str(fTitle), SalesForm(str(fSalesForm))
	e.OrderID, e.ParentOrderID, e.LiveID = str(fOrderID), str(fParentOrderID), str(fLiveID)
	e.RefundID, e.Waybill, e.ReturnID, e.ReceiptID = str(fRefundID), str(fWaybill), str(fReturnID), str(fReceiptID)
	e.CountedBy, e.Supplier = str(fCountedBy), str(fSupplier)
	e.PriceFen, e.UnitPriceFen = d.ints[fPriceFen], d.ints[fUnitPriceFen]
	e.ShipWithinHours, e.ShipWithinDays = int(d.ints[fShipWithinHours]), int(d.ints[fShipWithinDays])
	e.At = d.times[0]
	const optional = 1<<fStock | 1<<fQty | 1<<fRestocked | 1<<fCounted | 1<<fShipBy | 1<<fDeliverBy
	if d.has&optional == 0 {
		return e
	}
	box := new(optionalBox)
	intp := func(f, i int) *int64 {
		if d.has&(1<<f) == 0 {
			return nil
		}
		box.ints[i] = d.ints[f]
		return &box.ints[i]
	}
	e.Stock, e.Qty, e.Restocked, e.Counted = intp(fStock, 0), intp(fQty, 1), intp(fRestocked, 2), intp(fCounted, 3)
	if d.has&(1<<fShipBy) != 0 {
		box.times[0] = d.times[2]
		e.ShipBy = &box.times[0]
	}
	if d.has&(1<<fDeliverBy) != 0 {
		box.times[1] = d.times[1]
		e.DeliverBy = &box.times[1]
	}
	return e
}
