package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"stockledger/projections"
)

// handle decides what to do with one instruction and does it: apply it
// (post the stock_set the platform confirms, stock = sellable), leave it
// (mode down and a raise), or pass it over (not newer than one handled for
// the SKU). maybePosted says an earlier run may have posted its stock_set
// already: then the SKU's history is read first, and a stock_set found is
// not posted again. retry reports whether a failure may pass on its own
// (ledgerd unreachable or busy) rather than be a refusal a retry repeats.
func (s *syncer) handle(ctx context.Context, in projections.SyncInstruction, maybePosted bool) (retry bool, err error) {
	d := syncDecision{Shop: in.Shop, SKU: in.SKU, Listed: in.Listed, Sellable: in.Sellable, Key: in.Key}
	last, seen := s.handled[in.SKU]
	switch {
	case seen && in.Seq == last:
		d.Action, d.Reason = "stale", "handled already"
		return false, s.report(d)
	case seen && in.Seq < last:
		d.Action, d.Reason = "stale", "older than "+projections.SyncKey(in.Shop, in.SKU, last)+", handled"
		return false, s.report(d)
	case in.Sellable == in.Listed:
		return false, nil // nothing to change
	case in.Sellable > in.Listed && s.mode == syncDown:
		s.handled[in.SKU] = in.Seq
		d.Action, d.Reason = "left", "mode down only lowers the platform figure (-mode full raises it)"
		return false, s.report(d)
	}
	if status, err := s.status(ctx, in); err != nil {
		return true, err
	} else if status != projections.StatusListed {
		// A platform holds no figure for a product never listed, and a
		// listing sets the figure of one delisted when it is listed again.
		s.handled[in.SKU] = in.Seq
		d.Action, d.Reason = "left", "not on sale ("+string(status)+"): its listing sets the platform figure"
		return false, s.report(d)
	}
	d.EventID = projections.SyncEventID(in.Key)
	if maybePosted {
		seq, err := s.posted(ctx, in, d.EventID)
		if err != nil {
			return true, err
		}
		if seq > 0 {
			s.handled[in.SKU] = in.Seq
			d.Action, d.EventSeq = "already", seq
			return false, s.report(d)
		}
	}
	seq, dup, err := s.postStockSet(ctx, in, d.EventID)
	if err != nil {
		var se *serviceError
		if errors.As(err, &se) && se.status/100 == 4 && se.status != http.StatusRequestTimeout && se.status != http.StatusTooManyRequests {
			d.Action, d.Reason = "refused", err.Error()
			_ = s.report(d)
			return false, fmt.Errorf("%s/%s: stock_set of instruction %s refused: %w", in.Shop, in.SKU, in.Key, err)
		}
		return true, fmt.Errorf("%s/%s: post stock_set of instruction %s: %w", in.Shop, in.SKU, in.Key, err)
	}
	s.handled[in.SKU] = in.Seq
	d.Action, d.EventSeq = "applied", seq
	if dup {
		d.Reason = "the same event was stored before"
	}
	return false, s.report(d)
}

// status reads the SKU's status now: an instruction carries none.
func (s *syncer) status(ctx context.Context, in projections.SyncInstruction) (projections.Status, error) {
	data, err := s.c.call(ctx, http.MethodGet, "/v1/shops/"+url.PathEscape(in.Shop)+"/skus/"+url.PathEscape(in.SKU), nil, nil)
	if err != nil {
		return "", fmt.Errorf("%s/%s: read status: %w", in.Shop, in.SKU, err)
	}
	var v struct {
		Status projections.Status `json:"status"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return "", fmt.Errorf("%s/%s: read status: %w", in.Shop, in.SKU, err)
	}
	return v.Status, nil
}

// postStockSet posts the stock_set that applies in, with event id id and
// at now, and returns its stream sequence and whether the stream had it
// already (a re-send within its duplicate window).
func (s *syncer) postStockSet(ctx context.Context, in projections.SyncInstruction, id string) (uint64, bool, error) {
	body, err := json.Marshal([]map[string]any{{
		"id": id, "type": "stock_set", "shop": in.Shop, "sku": in.SKU, "stock": in.Sellable,
		"at": time.Now().UTC().Format(time.RFC3339Nano),
	}})
	if err != nil {
		return 0, false, err
	}
	data, err := s.c.call(ctx, http.MethodPost, "/v1/events", nil, body)
	if err != nil {
		return 0, false, err
	}
	var r struct {
		Events []struct {
			Seq       uint64 `json:"seq"`
			Duplicate bool   `json:"duplicate"`
		} `json:"events"`
	}
	if err := json.Unmarshal(data, &r); err != nil || len(r.Events) != 1 {
		return 0, false, fmt.Errorf("decode answer %s: %v", data, err)
	}
	return r.Events[0].Seq, r.Events[0].Duplicate, nil
}

// posted returns the stream sequence of the stock_set of event id id in the
// SKU's history after the instruction, 0 when there is none (within
// syncHistoryPagesMax pages). A stock_set applying in comes after it.
func (s *syncer) posted(ctx context.Context, in projections.SyncInstruction, id string) (uint64, error) {
	path := "/v1/shops/" + url.PathEscape(in.Shop) + "/skus/" + url.PathEscape(in.SKU) + "/events"
	after := in.Seq
	for range syncHistoryPagesMax {
		q := url.Values{"after_seq": {strconv.FormatUint(after, 10)}, "limit": {strconv.Itoa(syncHistoryPage)}}
		data, err := s.c.call(ctx, http.MethodGet, path, q, nil)
		if err != nil {
			return 0, fmt.Errorf("%s/%s: history after seq %d: %w", in.Shop, in.SKU, after, err)
		}
		var r struct {
			Events       []historyEntry `json:"events"`
			NextAfterSeq uint64         `json:"next_after_seq"`
		}
		if err := json.Unmarshal(data, &r); err != nil {
			return 0, fmt.Errorf("%s/%s: history after seq %d: %w", in.Shop, in.SKU, after, err)
		}
		for _, e := range r.Events {
			var ev struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(e.Event, &ev) == nil && ev.ID == id {
				return e.Seq, nil
			}
		}
		if r.NextAfterSeq == 0 {
			return 0, nil
		}
		after = r.NextAfterSeq
	}
	return 0, nil
}

// report prints a decision: a line for people, or a JSON object per line
// with -json.
func (s *syncer) report(d syncDecision) error {
	s.counts[d.Action]++
	d.At = time.Now()
	if s.c.json {
		b, err := json.Marshal(d)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(s.c.stdout, "%s\n", b)
		return err
	}
	var what string
	switch d.Action {
	case "applied":
		what = fmt.Sprintf("platform %d -> %d", d.Listed, d.Sellable)
		if d.Reason != "" {
			what += " (" + d.Reason + ")"
		}
	case "already":
		what = fmt.Sprintf("platform %d -> %d posted before (event %s, seq %d), not again", d.Listed, d.Sellable, d.EventID, d.EventSeq)
	case "left":
		what = fmt.Sprintf("platform left at %d, should show %d: %s", d.Listed, d.Sellable, d.Reason)
	case "stale":
		what = "passed over: " + d.Reason
	default:
		what = fmt.Sprintf("platform %d -> %d %s: %s", d.Listed, d.Sellable, d.Action, d.Reason)
	}
	_, err := fmt.Fprintf(s.c.stdout, "%s %s/%s: %s (instruction %s)\n", d.At.Format("15:04:05"), d.Shop, d.SKU, what, d.Key)
	return err
}

// logf prints a note that is not a decision: text, or {"at","message"}
// with -json.
func (s *syncer) logf(format string, args ...any) {
	now, msg := time.Now(), fmt.Sprintf(format, args...)
	if s.c.json {
		b, _ := json.Marshal(map[string]any{"at": now, "message": msg})
		fmt.Fprintf(s.c.stdout, "%s\n", b)
		return
	}
	fmt.Fprintf(s.c.stdout, "%s %s\n", now.Format("15:04:05"), msg)
}

// summary prints how many instructions this run applied, left and passed
// over.
func (s *syncer) summary() {
	if s.c.json {
		return
	}
	k := s.counts
	s.logf("%s: %d applied, %d posted before, %d left, %d passed over, %d refused",
		s.shop, k["applied"], k["already"], k["left"], k["stale"], k["refused"])
}
