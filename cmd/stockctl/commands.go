package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"stockledger/ledger"
	"stockledger/projections"
)

// view is a SKU view as the service answers it, with the as_of of a
// historical read.
type view struct {
	projections.View
	AsOf *time.Time `json:"as_of"`
}

// real is the SKU's real limit: available for spot, capacity_left for presale.
func (v view) real() int64 {
	if v.SalesForm == ledger.Presale {
		return v.CapacityLeft
	}
	return v.Available
}

type alert = projections.Alert

// yuan formats fen as people read money.
func yuan(fen int64) string { return projections.Yuan(fen) }

func sellout(v view) string {
	if v.SelloutETA == nil {
		return ""
	}
	return " sellout=" + v.SelloutETA.Local().Format("15:04")
}

func (c *cli) table() *tabwriter.Writer {
	return tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
}

// sendFields maps each send flag to its event field and whether it is a
// number.
var sendFields = []struct {
	flag, field, help string
	number            bool
}{
	{"type", "type", "event type: listing, delisting, stock_set, safety_stock_set, restock, sale, cancel, shipment, return, promise_changed, recount, capacity_confirmed", false},
	{"shop", "shop", "shop", false},
	{"sku", "sku", "sku", false},
	{"id", "id", "event id (UUID; assigned by ledgerd when absent)", false},
	{"at", "at", "when it happened, RFC 3339 (now when absent)", false},
	{"title", "title", "listing: title", false},
	{"price-fen", "price_fen", "listing: price in fen", true},
	{"stock", "stock", "listing, stock_set: platform stock", true},
	{"sales-form", "sales_form", "listing: spot or presale", false},
	{"ship-within-hours", "ship_within_hours", "listing (spot): 24, 48 or 72", true},
	{"ship-within-days", "ship_within_days", "listing (presale): 4 to 90", true},
	{"order-id", "order_id", "sale, cancel, shipment, return, promise_changed: the order (a line is shop, sku, order)", false},
	{"parent-order-id", "parent_order_id", "sale: the parent order the line belongs to", false},
	{"qty", "qty", "sale, restock, capacity_confirmed, safety_stock_set, return: units; cancel, shipment: part of the line (with -refund-id or -waybill)", true},
	{"unit-price-fen", "unit_price_fen", "sale: unit price in fen", true},
	{"live-id", "live_id", "sale: live session", false},
	{"ship-by", "ship_by", "sale: the platform's promised ship time; promise_changed: the new one (RFC 3339)", false},
	{"refund-id", "refund_id", "cancel: the refund of part of a line (with -qty)", false},
	{"waybill", "waybill", "shipment: the package of part of a line (with -qty)", false},
	{"return-id", "return_id", "return: the buyer's return", false},
	{"restocked", "restocked", "return: units back on the shelf (default: all)", true},
	{"receipt-id", "receipt_id", "restock: the goods receipt (applied once)", false},
	{"counted", "counted", "recount: units counted", true},
	{"counted-by", "counted_by", "recount: who counted", false},
	{"supplier", "supplier", "capacity_confirmed: supplier", false},
	{"deliver-by", "deliver_by", "capacity_confirmed: RFC 3339", false},
}

func (c *cli) send(ctx context.Context, args []string) error {
	fs := c.flags("send")
	file := fs.String("f", "", "JSON file of events: one event, an array, or one event per line; - reads stdin")
	values := make(map[string]*string, len(sendFields))
	for _, f := range sendFields {
		values[f.flag] = fs.String(f.flag, "", f.help)
	}
	if _, err := parse(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var events []json.RawMessage
	switch {
	case *file != "":
		for _, f := range sendFields {
			if set[f.flag] {
				return fmt.Errorf("send: -f and -%s: give events either in a file or by flags", f.flag)
			}
		}
		var err error
		if events, err = c.readEvents(*file); err != nil {
			return err
		}
	default:
		ev := map[string]any{}
		for _, f := range sendFields {
			if !set[f.flag] {
				continue
			}
			raw := *values[f.flag]
			if !f.number {
				ev[f.field] = raw
				continue
			}
			n, err := int64Flag(f.flag, raw)
			if err != nil {
				return err
			}
			ev[f.field] = n
		}
		if ev["type"] == nil {
			return errors.New("send: -type is required (or -f FILE)")
		}
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		events = []json.RawMessage{b}
	}
	return c.post(ctx, events)
}

// readEvents reads one event, an array of events, or one event per line.
func (c *cli) readEvents(name string) ([]json.RawMessage, error) {
	var r io.Reader = c.stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("send -f: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, inputBytesMax+1))
	if err != nil {
		return nil, fmt.Errorf("send -f %s: %w", name, err)
	}
	if len(data) > inputBytesMax {
		return nil, fmt.Errorf("send -f %s: more than %d bytes", name, inputBytesMax)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var out []json.RawMessage
	for i := 0; ; i++ {
		var v json.RawMessage
		if err := dec.Decode(&v); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("send -f %s: JSON value %d: %w", name, i+1, err)
		}
		if t := bytes.TrimSpace(v); len(t) > 0 && t[0] == '[' {
			var arr []json.RawMessage
			if err := json.Unmarshal(v, &arr); err != nil {
				return nil, fmt.Errorf("send -f %s: array %d: %w", name, i+1, err)
			}
			out = append(out, arr...)
			continue
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("send -f %s: no event", name)
	}
	return out, nil
}

// post sends events in batches of ledger.MaxBatch, each all or nothing, and
// stops at the first batch refused.
func (c *cli) post(ctx context.Context, events []json.RawMessage) error {
	type ack struct {
		ID        string `json:"id"`
		Seq       uint64 `json:"seq"`
		Duplicate bool   `json:"duplicate"`
	}
	var acks []ack
	var lastSeq uint64
	for start := 0; start < len(events); start += ledger.MaxBatch {
		batch := events[start:min(start+ledger.MaxBatch, len(events))]
		body, err := json.Marshal(batch)
		if err != nil {
			return err
		}
		data, err := c.call(ctx, http.MethodPost, "/v1/events", nil, body)
		if err != nil {
			if start > 0 {
				return fmt.Errorf("events %d and on not sent (the %d before were): %w", start, start, err)
			}
			return err
		}
		var r struct {
			Events  []ack  `json:"events"`
			LastSeq uint64 `json:"last_seq"`
		}
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
		acks = append(acks, r.Events...)
		lastSeq = max(lastSeq, r.LastSeq)
	}
	if c.json {
		b, err := json.Marshal(map[string]any{"events": acks, "last_seq": lastSeq})
		if err != nil {
			return err
		}
		return c.printJSON(b)
	}
	tw := c.table()
	fmt.Fprintln(tw, "SEQ\tID\tDUPLICATE")
	for _, a := range acks {
		dup := ""
		if a.Duplicate {
			dup = "duplicate (stored before)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", a.Seq, a.ID, dup)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(c.stdout, "%d events, last seq %d (read your writes with min_seq=%d)\n", len(acks), lastSeq, lastSeq)
	return err
}

func (c *cli) setZero(ctx context.Context, args []string) error {
	fs := c.flags("set-zero")
	pos, err := parse(fs, args, "SHOP", "SKU")
	if err != nil {
		return err
	}
	ev, err := json.Marshal(map[string]any{"type": "stock_set", "shop": pos[0], "sku": pos[1], "stock": 0})
	if err != nil {
		return err
	}
	return c.post(ctx, []json.RawMessage{ev})
}

func (c *cli) sku(ctx context.Context, args []string) error {
	fs := c.flags("sku")
	asOf := fs.String("as-of", "", "show the SKU as it was at this RFC 3339 time")
	wait := minSeqFlag(fs)
	pos, err := parse(fs, args, "SHOP", "SKU")
	if err != nil {
		return err
	}
	q := wait.query(nil)
	if *asOf != "" {
		q.Set("as_of", *asOf)
	}
	data, err := c.call(ctx, http.MethodGet, "/v1/shops/"+url.PathEscape(pos[0])+"/skus/"+url.PathEscape(pos[1]), q, nil)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(data)
	}
	var v view
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	tw := c.table()
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	if v.AsOf != nil {
		row("as of", v.AsOf.Format(time.RFC3339))
	}
	row("sku", v.Shop+"/"+v.SKU)
	row("title", v.Title)
	row("status", string(v.Status)+" "+string(v.SalesForm))
	row("price", yuan(v.PriceFen))
	row("listed (platform)", v.Listed)
	row("on hand", v.OnHand)
	row("committed", v.Committed)
	row("available", v.Available)
	row("capacity", v.Capacity)
	row("presale committed", v.PresaleCommitted)
	row("presale shipped", v.PresaleShipped)
	row("capacity left", v.CapacityLeft)
	row("safety stock", v.SafetyStock)
	row("sellable (platform should show)", v.Sellable)
	row("open / late order lines", fmt.Sprintf("%d / %d", v.OpenOrders, v.LateOrders))
	row("money at risk", yuan(v.ExposureFen))
	row("open alerts", v.OpenAlerts)
	row("pace", fmt.Sprintf("%d per hour", v.PacePerHour))
	if v.SelloutETA != nil {
		row("sellout at", v.SelloutETA.Format(time.RFC3339))
	}
	row("last seq", v.LastSeq)
	row("updated", v.UpdatedAt.Format(time.RFC3339))
	return tw.Flush()
}

func (c *cli) stock(ctx context.Context, args []string) error {
	fs := c.flags("stock")
	wait := minSeqFlag(fs)
	pos, err := parse(fs, args, "SHOP")
	if err != nil {
		return err
	}
	q := wait.query(nil)
	data, err := c.call(ctx, http.MethodGet, "/v1/shops/"+url.PathEscape(pos[0])+"/skus", q, nil)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(data)
	}
	var r struct {
		SKUs []view `json:"skus"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	tw := c.table()
	fmt.Fprintln(tw, "SKU\tSTATUS\tFORM\tLISTED\tSELLABLE\tREAL\tON_HAND\tCOMMITTED\tCAPACITY\tOPEN\tLATE\tAT_RISK\tPACE/H\tSELLOUT\tALERTS")
	for _, v := range r.SKUs {
		so := "-"
		if v.SelloutETA != nil {
			so = v.SelloutETA.Local().Format("15:04")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%s\t%d\n", v.SKU, v.Status, v.SalesForm, v.Listed, v.Sellable, v.real(),
			v.OnHand, v.Committed, v.Capacity, v.OpenOrders, v.LateOrders, yuan(v.ExposureFen), v.PacePerHour, so, v.OpenAlerts)
	}
	return tw.Flush()
}

func (c *cli) alerts(ctx context.Context, args []string) error {
	fs := c.flags("alerts")
	state := fs.String("state", "open", "open, resolved or all")
	wait := minSeqFlag(fs)
	pos, err := parse(fs, args, "SHOP")
	if err != nil {
		return err
	}
	q := wait.query(url.Values{"state": {*state}})
	data, err := c.call(ctx, http.MethodGet, "/v1/shops/"+url.PathEscape(pos[0])+"/alerts", q, nil)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(data)
	}
	var r struct {
		Alerts []alert `json:"alerts"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	tw := c.table()
	fmt.Fprintln(tw, "KIND\tSKU\tSTATE\tUNITS\tAT_RISK\tRAISED\tMESSAGE")
	for _, a := range r.Alerts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", a.Kind, a.SKU, a.State, a.UnitsShort, yuan(a.ExposureFen),
			a.RaisedAt.Local().Format("01-02 15:04"), a.Message)
	}
	return tw.Flush()
}

// historyEntry is one event of a history answer: Refused is why the
// projector refused it (it changed nothing), empty when it applied it.
type historyEntry struct {
	Seq      uint64          `json:"seq"`
	StoredAt time.Time       `json:"stored_at"`
	Event    json.RawMessage `json:"event"`
	Refused  string          `json:"refused"`
}

func (c *cli) history(ctx context.Context, args []string) error {
	fs := c.flags("history")
	after := fs.Uint64("after-seq", 0, "events after this stream sequence")
	limit := fs.Int("limit", 0, "at most this many events (ledgerd's default when 0)")
	pos, err := parse(fs, args, "SHOP", "SKU")
	if err != nil {
		return err
	}
	q := url.Values{}
	if *after > 0 {
		q.Set("after_seq", fmt.Sprint(*after))
	}
	if *limit > 0 {
		q.Set("limit", fmt.Sprint(*limit))
	}
	data, err := c.call(ctx, http.MethodGet, "/v1/shops/"+url.PathEscape(pos[0])+"/skus/"+url.PathEscape(pos[1])+"/events", q, nil)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(data)
	}
	var r struct {
		Events       []historyEntry `json:"events"`
		NextAfterSeq uint64         `json:"next_after_seq"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	if err := c.printHistory(r.Events); err != nil {
		return err
	}
	if r.NextAfterSeq > 0 {
		_, err = fmt.Fprintf(c.stdout, "more: stockctl history %s %s -after-seq %d\n", pos[0], pos[1], r.NextAfterSeq)
	}
	return err
}

// printHistory prints events as a table; an event the projector refused
// gets a line below it with the reason.
func (c *cli) printHistory(events []historyEntry) error {
	tw := c.table()
	fmt.Fprintln(tw, "SEQ\tSTORED\tTYPE\tDETAILS")
	refused := 0
	for _, e := range events {
		typ, details := eventDetails(e.Event)
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.Seq, e.StoredAt.Local().Format("01-02 15:04:05"), typ, details)
		if e.Refused != "" {
			refused++
			fmt.Fprintf(tw, "\t\t\tREFUSED by the projector (changed nothing): %s\n", e.Refused)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if refused == 0 {
		return nil
	}
	_, err := fmt.Fprintf(c.stdout, "%d of these events refused by the projector: they are in the stream but changed nothing\n", refused)
	return err
}

// eventDetails returns an event's type and its other fields as key=value,
// or "?" and the raw text of a message that is not a JSON object.
func eventDetails(raw json.RawMessage) (typ, details string) {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return "?", string(raw)
	}
	typ, _ = m["type"].(string)
	delete(m, "type")
	delete(m, "shop")
	delete(m, "sku")
	delete(m, "id")
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%v", k, m[k]))
	}
	return typ, strings.Join(parts, " ")
}

func (c *cli) follow(ctx context.Context, args []string) error {
	fs := c.flags("follow")
	lastID := fs.String("last-event-id", "", "resume after this alert stream sequence")
	pos, err := parse(fs, args, "SHOP")
	if err != nil {
		return err
	}
	return c.followFeed(ctx, pos[0], *lastID)
}
