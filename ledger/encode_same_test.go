package ledger_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"stockledger/ledger"
)

// encodeSeed is one set of FuzzEncodeSame's inputs: fuzzEvent makes an
// event of them.
type encodeSeed struct {
	s0, s1, s2, s3 string // the strings, field i taking s(i mod 4)
	n0, n1         int64  // the numbers, field i taking n(i mod 2)
	mask           uint64 // bit i: field i set; bits 32 on: each time's zone
	sec, nsec      int64  // the times, from time.Unix(sec, nsec)
	offset         int    // a zone's offset east of UTC, in seconds
}

// Masks: allFields sets every field of an event; fixedZones puts every
// time in a zone of the seed's offset, dayZones in one of the offset
// within a day, localZones in the local zone (the default is UTC).
const (
	allFields  = 1<<32 - 1
	fixedZones = 0x55555555 << 32
	dayZones   = 0xaaaaaaaa << 32
	localZones = 0xffffffff << 32
	at2026     = 1795723200 // 2026-11-26T20:00:00Z
)

// encodeSeeds are events as feeds send them and each thing the encoder
// must do as encoding/json does.
var encodeSeeds = []encodeSeed{
	// Whole events: every field, only the common ones, times in zones.
	{"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b", "sale", "shop-demo", "sku_1-A", 9900, 1, allFields, at2026, 0, 0},
	{"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b", "listing", "shop-demo", "sku_1-A", 9900, 10, 0b11111, at2026, 123456000, 0},
	{"id", "listing", "丝绒口红 红色", "k", 48, 0, allFields | fixedZones, at2026, 1, 8 * 3600},
	{"id", "recount", "s", "k", -1, 0, allFields | dayZones, at2026, 999999999, -5*3600 - 30*60},
	// Strings: HTML, JavaScript separators, control characters, DEL,
	// bytes that are not UTF-8, escapes, multi-byte runes, empty.
	{"<a href=\"x\">&amp;</a>", "\u2028\u2029\u2027\u202a", "\x00\x01\x08\x09\x0a\x0b\x0c\x0d\x1f\x7f", "\\\"/'", 0, 0, allFields, at2026, 0, 0},
	{"a\xffb", "\xe2\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80\xc0\xaf", 0, 0, allFields, at2026, 0, 0},
	{"é", "😀", "\U0010ffff", "", 0, 0, allFields, at2026, 0, 0},
	{"", "", "", "", 0, 0, 0, 0, 0, 0},
	// Numbers at their bounds; pointers to zero are kept.
	{"id", "stock_set", "s", "k", -1 << 63, 1<<63 - 1, allFields, at2026, 0, 0},
	{"id", "stock_set", "s", "k", 0, 0, allFields, at2026, 0, 0},
	// Times: the ends of [0,9999], just outside them, far outside, the zero
	// time, zones with seconds and beyond a day.
	{"id", "sale", "s", "k", 1, 1, allFields, -62167219200, 0, 0},
	{"id", "sale", "s", "k", 1, 1, allFields, -62167219201, 0, 0},
	{"id", "sale", "s", "k", 1, 1, allFields, 253402300799, 999999999, 0},
	{"id", "sale", "s", "k", 1, 1, allFields, 253402300800, 0, 0},
	{"id", "sale", "s", "k", 1, 1, 1<<4 | 1<<15, 1 << 62, -1 << 62, 0},
	{"id", "sale", "s", "k", 1, 1, allFields, -62135596800, 0, 0},
	{"id", "sale", "s", "k", 1, 1, allFields | fixedZones, at2026, 10, 23*3600 + 59*60 + 59},
	{"id", "sale", "s", "k", 1, 1, allFields | fixedZones, at2026, 10, -23*3600 - 59*60 - 59},
	{"id", "sale", "s", "k", 1, 1, allFields | localZones, at2026, 10, 0},
	{"id", "sale", "s", "k", 1, 1, allFields | fixedZones, at2026, 10, 24 * 3600},
	{"id", "sale", "s", "k", 1, 1, allFields | fixedZones, at2026, 10, -100 * 3600},
	{"id", "sale", "s", "k", 1, 1, 1<<15 | fixedZones, at2026, 10, 30 * 3600},
	{"id", "sale", "s", "k", 1, 1, allFields | dayZones, -62167219200 + 3600, 0, 2 * 3600},
	{"id", "sale", "s", "k", 1, 1, allFields | fixedZones, -62167219200 - 3600, 0, 2 * 3600},
	{"id", "sale", "s", "k", 1, 1, allFields | fixedZones, 253402300799 - 3600, 0, -2 * 3600},
}

// FuzzEncodeSame holds EncodeEvent and AppendEvent to json.Marshal, the
// encoder they replaced: for any event, the same bytes, or errors of the
// same words.
func FuzzEncodeSame(f *testing.F) {
	for _, s := range encodeSeeds {
		f.Add(s.s0, s.s1, s.s2, s.s3, s.n0, s.n1, s.mask, s.sec, s.nsec, s.offset)
	}
	f.Fuzz(func(t *testing.T, s0, s1, s2, s3 string, n0, n1 int64, mask uint64, sec, nsec int64, offset int) {
		e := fuzzEvent(t, encodeSeed{s0, s1, s2, s3, n0, n1, mask, sec, nsec, offset})
		checkEncodeSame(t, &e)
	})
}

// TestEncodeSame holds the encoder to json.Marshal for what fuzz inputs
// cannot make: no event, a time with a monotonic reading, named zones.
func TestEncodeSame(t *testing.T) {
	checkEncodeSame(t, nil)
	now := time.Now()
	checkEncodeSame(t, &ledger.Event{ID: "id", At: now, ShipBy: &now})
	checkEncodeSame(t, &ledger.Event{ID: "id", At: now.Local(), DeliverBy: ledger.Time(now.UTC())})
	for _, name := range []string{"Asia/Shanghai", "America/St_Johns", "Australia/Lord_Howe"} {
		loc, err := time.LoadLocation(name)
		if err != nil {
			t.Logf("no zone %s: %v", name, err)
			continue
		}
		checkEncodeSame(t, &ledger.Event{ID: "id", At: now.In(loc), ShipBy: ledger.Time(time.Date(1900, 1, 1, 0, 0, 0, 0, loc))})
	}
}

// fuzzEvent sets the fields of an event from s, by reflection, so that a
// field added to Event is encoded here without changing the test; a field
// of a kind it does not know fails the test.
func fuzzEvent(t *testing.T, s encodeSeed) ledger.Event {
	t.Helper()
	var e ledger.Event
	v := reflect.ValueOf(&e).Elem()
	strs, nums := [4]string{s.s0, s.s1, s.s2, s.s3}, [2]int64{s.n0, s.n1}
	times := 0 // the times set so far
	for i := range v.NumField() {
		f, n := v.Field(i), nums[i%2]
		if s.mask&(1<<i) == 0 && f.Type() != reflect.TypeFor[time.Time]() {
			continue // left zero: empty, 0 or nil
		}
		at := fuzzTime(s, i, times)
		switch {
		case f.Kind() == reflect.String:
			f.SetString(strs[i%4])
		case f.Kind() == reflect.Int || f.Kind() == reflect.Int64:
			f.SetInt(n)
		case f.Type() == reflect.TypeFor[*int64]():
			f.Set(reflect.ValueOf(&n))
		case f.Type() == reflect.TypeFor[time.Time]():
			f.Set(reflect.ValueOf(at))
			times++
		case f.Type() == reflect.TypeFor[*time.Time]():
			f.Set(reflect.ValueOf(&at))
			times++
		default:
			t.Fatalf("Event.%s is a %s: teach fuzzEvent to set it", v.Type().Field(i).Name, f.Type())
		}
	}
	return e
}

// fuzzTime is the time of field i when k times were set before it: s's
// instant, 11 hours later for each earlier time, in the zone bits 32+2i
// and 33+2i of the mask choose: UTC, a zone of s's offset, the same offset
// within a day, or the local zone.
func fuzzTime(s encodeSeed, i, k int) time.Time {
	at := time.Unix(s.sec, s.nsec).Add(time.Duration(k) * 11 * time.Hour)
	switch s.mask >> (32 + 2*(i%16)) & 3 {
	case 1:
		return at.In(time.FixedZone("fuzz", s.offset))
	case 2:
		return at.In(time.FixedZone("", s.offset%(24*3600)))
	case 3:
		return at.Local()
	}
	return at.UTC()
}

// checkEncodeSame fails t unless EncodeEvent and AppendEvent (after a
// prefix) give json.Marshal's bytes for e, or its error with the event's
// id before it.
func checkEncodeSame(t *testing.T, e *ledger.Event) {
	t.Helper()
	want, wantErr := json.Marshal(e)
	got, err := ledger.EncodeEvent(e)
	prefix := []byte("prefix")
	appended, appendErr := ledger.AppendEvent(prefix, e)
	if wantErr != nil {
		if wantText := "encode event " + e.ID + ": " + wantErr.Error(); err == nil || err.Error() != wantText {
			t.Fatalf("EncodeEvent(%#v) = %q, %v; want error %q", e, got, err, wantText)
		}
		var me *json.MarshalerError
		if !errors.As(err, &me) || appendErr == nil || appendErr.Error() != wantErr.Error() || !bytes.Equal(appended, prefix) {
			t.Fatalf("EncodeEvent(%#v) error %v; AppendEvent = %q, %v: want a *json.MarshalerError %v and the prefix alone",
				e, err, appended, appendErr, wantErr)
		}
		return
	}
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("EncodeEvent(%#v) =\n%q, %v; json.Marshal gives\n%q", e, got, err, want)
	}
	// A fresh prefix: AppendEvent may have written into prefix's array.
	if appendErr != nil || !bytes.Equal(appended, append([]byte("prefix"), want...)) {
		t.Fatalf("AppendEvent(prefix, %#v) = %q, %v; want prefix and %q", e, appended, appendErr, want)
	}
}
