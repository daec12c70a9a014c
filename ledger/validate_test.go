package ledger_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"stockledger/ledger"
)

var vtAt = time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)

const vtID = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"

// vtValid returns a valid event of type t with every field its type takes.
func vtValid(t ledger.Type) ledger.Event {
	e := ledger.Event{ID: vtID, Type: t, Shop: "shop-demo", SKU: "sku_1-A", At: vtAt}
	switch t {
	case ledger.Listing:
		e.Title, e.PriceFen, e.Stock, e.SalesForm, e.ShipWithinHours = "Velvet lipstick, red", 9900, ledger.Int64(10), ledger.Spot, 48
	case ledger.StockSet:
		e.Stock = ledger.Int64(5)
	case ledger.Restock:
		e.Qty, e.ReceiptID = ledger.Int64(5), "GR-2026-0007"
	case ledger.SafetyStockSet:
		e.Qty = ledger.Int64(3)
	case ledger.Sale:
		e.OrderID, e.Qty, e.UnitPriceFen, e.LiveID = "ks-10000", ledger.Int64(1), 9900, "live-0412"
		e.ParentOrderID, e.ShipBy = "dy-p1", ledger.Time(vtAt.Add(48*time.Hour))
	case ledger.Cancel:
		e.OrderID, e.Qty, e.RefundID = "ks-10000", ledger.Int64(1), "rf-1"
	case ledger.Shipment:
		e.OrderID, e.Qty, e.Waybill = "ks-10000", ledger.Int64(1), "SF1001"
	case ledger.Return:
		e.OrderID, e.Qty, e.ReturnID, e.Restocked = "ks-10000", ledger.Int64(2), "RT-1", ledger.Int64(1)
	case ledger.PromiseChanged:
		e.OrderID, e.ShipBy = "ks-10000", ledger.Time(vtAt.Add(72*time.Hour))
	case ledger.Recount:
		e.Counted, e.CountedBy = ledger.Int64(7), "warehouse-a"
	case ledger.CapacityConfirmed:
		by := vtAt.Add(10 * 24 * time.Hour)
		e.Supplier, e.Qty, e.DeliverBy = "factory-a", ledger.Int64(100), &by
	}
	return e
}

func vtPresale() ledger.Event {
	e := vtValid(ledger.Listing)
	e.SalesForm, e.ShipWithinHours, e.ShipWithinDays = ledger.Presale, 0, 15
	return e
}

func vtFields(err error) []string {
	var out []string
	for _, fe := range ledger.FieldErrors(err) {
		out = append(out, fe.Field)
	}
	return out
}

// checkFieldErrors checks that err is a validation error naming exactly the
// fields want (in any order), each problem a FieldError with a rule.
func checkFieldErrors(t *testing.T, err error, want ...string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Errorf("err = %v, want none", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("err = nil, want problems with %v", want)
	}
	if !errors.Is(err, ledger.ErrInvalidEvent) {
		t.Errorf("errors.Is(%v, ErrInvalidEvent) = false", err)
	}
	got := vtFields(err)
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("fields named = %v, want %v (err: %v)", got, want, err)
	}
	for _, fe := range ledger.FieldErrors(err) {
		if fe.Rule == "" {
			t.Errorf("FieldError %+v has no rule", fe)
		}
		if !strings.Contains(err.Error(), fe.Field) {
			t.Errorf("error text %q does not name %s", err.Error(), fe.Field)
		}
	}
}

func TestValidateAcceptsEveryType(t *testing.T) {
	for _, typ := range ledger.Types {
		e := vtValid(typ)
		if err := e.Validate(); err != nil {
			t.Errorf("valid %s: %v", typ, err)
		}
	}
	e := vtPresale()
	if err := e.Validate(); err != nil {
		t.Errorf("valid presale listing: %v", err)
	}
}

func TestValidate(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name   string
		typ    ledger.Type
		mutate func(e *ledger.Event)
		fields []string // the fields named; none: valid
	}{
		// Common fields.
		{"id missing", ledger.Sale, func(e *ledger.Event) { e.ID = "" }, []string{"id"}},
		{"id not a uuid", ledger.Sale, func(e *ledger.Event) { e.ID = "order-1" }, []string{"id"}},
		{"id in braces", ledger.Sale, func(e *ledger.Event) { e.ID = "{" + vtID + "}" }, []string{"id"}},
		{"id as urn", ledger.Sale, func(e *ledger.Event) { e.ID = "urn:uuid:" + vtID }, []string{"id"}},
		{"id without dashes", ledger.Sale, func(e *ledger.Event) { e.ID = strings.ReplaceAll(vtID, "-", "") }, []string{"id"}},
		{"id upper case", ledger.Sale, func(e *ledger.Event) { e.ID = strings.ToUpper(vtID) }, nil},
		{"type missing", ledger.Sale, func(e *ledger.Event) { e.Type = "" }, []string{"type"}},
		{"type unknown", ledger.Sale, func(e *ledger.Event) { e.Type = "refund" }, []string{"type"}},
		{"shop missing", ledger.Sale, func(e *ledger.Event) { e.Shop = "" }, []string{"shop"}},
		{"sku missing", ledger.Sale, func(e *ledger.Event) { e.SKU = "" }, []string{"sku"}},
		{"shop with a dot", ledger.Sale, func(e *ledger.Event) { e.Shop = "shop.demo" }, []string{"shop"}},
		{"shop with a star", ledger.Sale, func(e *ledger.Event) { e.Shop = "shop*" }, []string{"shop"}},
		{"shop with a gt", ledger.Sale, func(e *ledger.Event) { e.Shop = "shop>" }, []string{"shop"}},
		{"shop with a space", ledger.Sale, func(e *ledger.Event) { e.Shop = "shop demo" }, []string{"shop"}},
		{"sku with a dot", ledger.Sale, func(e *ledger.Event) { e.SKU = "tea.set" }, []string{"sku"}},
		{"sku with a star", ledger.Sale, func(e *ledger.Event) { e.SKU = "*" }, []string{"sku"}},
		{"sku with a gt", ledger.Sale, func(e *ledger.Event) { e.SKU = ">" }, []string{"sku"}},
		{"sku with a space", ledger.Sale, func(e *ledger.Event) { e.SKU = "tea set" }, []string{"sku"}},
		{"sku with a trailing newline", ledger.Sale, func(e *ledger.Event) { e.SKU = "tea\n" }, []string{"sku"}},
		{"sku with a tab", ledger.Sale, func(e *ledger.Event) { e.SKU = "tea\tset" }, []string{"sku"}},
		{"sku not ASCII", ledger.Sale, func(e *ledger.Event) { e.SKU = "口红" }, []string{"sku"}},
		{"sku of 64", ledger.Sale, func(e *ledger.Event) { e.SKU = long(64) }, nil},
		{"sku of 65", ledger.Sale, func(e *ledger.Event) { e.SKU = long(65) }, []string{"sku"}},
		{"shop of 65", ledger.Sale, func(e *ledger.Event) { e.Shop = long(65) }, []string{"shop"}},
		{"at missing", ledger.Sale, func(e *ledger.Event) { e.At = time.Time{} }, []string{"at"}},
		{"at before 2000", ledger.Sale, func(e *ledger.Event) { e.At = ledger.MinAt.Add(-time.Second) }, []string{"at"}},
		{"at 2000", ledger.Sale, func(e *ledger.Event) { e.At = ledger.MinAt }, nil},
		{"at 2100", ledger.Sale, func(e *ledger.Event) { e.At = ledger.MaxAt }, []string{"at"}},

		// listing
		{"listing title missing", ledger.Listing, func(e *ledger.Event) { e.Title = "" }, []string{"title"}},
		{"listing title of 256 bytes", ledger.Listing, func(e *ledger.Event) { e.Title = long(ledger.MaxTextLen) }, nil},
		{"listing title too long", ledger.Listing, func(e *ledger.Event) { e.Title = long(ledger.MaxTextLen + 1) }, []string{"title"}},
		{"listing title control character", ledger.Listing, func(e *ledger.Event) { e.Title = "red\x00" }, []string{"title"}},
		{"listing title invalid UTF-8", ledger.Listing, func(e *ledger.Event) { e.Title = "red\xff" }, []string{"title"}},
		{"listing title Chinese", ledger.Listing, func(e *ledger.Event) { e.Title = "丝绒口红 红色" }, nil},
		{"listing price_fen 0", ledger.Listing, func(e *ledger.Event) { e.PriceFen = 0 }, []string{"price_fen"}},
		{"listing price_fen negative", ledger.Listing, func(e *ledger.Event) { e.PriceFen = -1 }, []string{"price_fen"}},
		{"listing price_fen at max", ledger.Listing, func(e *ledger.Event) { e.PriceFen = ledger.MaxPriceFen }, nil},
		{"listing price_fen past max", ledger.Listing, func(e *ledger.Event) { e.PriceFen = ledger.MaxPriceFen + 1 }, []string{"price_fen"}},
		{"listing stock missing", ledger.Listing, func(e *ledger.Event) { e.Stock = nil }, []string{"stock"}},
		{"listing stock 0", ledger.Listing, func(e *ledger.Event) { e.Stock = ledger.Int64(0) }, nil},
		{"listing stock negative", ledger.Listing, func(e *ledger.Event) { e.Stock = ledger.Int64(-1) }, []string{"stock"}},
		{"listing stock at max", ledger.Listing, func(e *ledger.Event) { e.Stock = ledger.Int64(ledger.MaxQty) }, nil},
		{"listing stock past max", ledger.Listing, func(e *ledger.Event) { e.Stock = ledger.Int64(ledger.MaxQty + 1) }, []string{"stock"}},
		{"listing sales_form missing", ledger.Listing, func(e *ledger.Event) { e.SalesForm, e.ShipWithinHours = "", 0 }, []string{"sales_form"}},
		{"listing sales_form unknown", ledger.Listing, func(e *ledger.Event) { e.SalesForm = "auction" }, []string{"sales_form"}},
		{"spot 24 hours", ledger.Listing, func(e *ledger.Event) { e.ShipWithinHours = 24 }, nil},
		{"spot 72 hours", ledger.Listing, func(e *ledger.Event) { e.ShipWithinHours = 72 }, nil},
		{"spot 36 hours", ledger.Listing, func(e *ledger.Event) { e.ShipWithinHours = 36 }, []string{"ship_within_hours"}},
		{"spot 96 hours", ledger.Listing, func(e *ledger.Event) { e.ShipWithinHours = 96 }, []string{"ship_within_hours"}},
		{"spot hours missing", ledger.Listing, func(e *ledger.Event) { e.ShipWithinHours = 0 }, []string{"ship_within_hours"}},
		{"spot with days", ledger.Listing, func(e *ledger.Event) { e.ShipWithinDays = 5 }, []string{"ship_within_days"}},
		{"spot with days instead of hours", ledger.Listing, func(e *ledger.Event) { e.ShipWithinHours, e.ShipWithinDays = 0, 5 },
			[]string{"ship_within_hours", "ship_within_days"}},
		{"presale 4 days", ledger.Listing, func(e *ledger.Event) { *e = vtPresale(); e.ShipWithinDays = 4 }, nil},
		{"presale 90 days", ledger.Listing, func(e *ledger.Event) { *e = vtPresale(); e.ShipWithinDays = 90 }, nil},
		{"presale 3 days", ledger.Listing, func(e *ledger.Event) { *e = vtPresale(); e.ShipWithinDays = 3 }, []string{"ship_within_days"}},
		{"presale 91 days", ledger.Listing, func(e *ledger.Event) { *e = vtPresale(); e.ShipWithinDays = 91 }, []string{"ship_within_days"}},
		{"presale days missing", ledger.Listing, func(e *ledger.Event) { *e = vtPresale(); e.ShipWithinDays = 0 }, []string{"ship_within_days"}},
		{"presale with hours", ledger.Listing, func(e *ledger.Event) { *e = vtPresale(); e.ShipWithinHours = 24 }, []string{"ship_within_hours"}},
		{"listing with an order_id", ledger.Listing, func(e *ledger.Event) { e.OrderID = "ks-1" }, []string{"order_id"}},
		{"listing with qty", ledger.Listing, func(e *ledger.Event) { e.Qty = ledger.Int64(1) }, []string{"qty"}},

		// delisting
		{"delisting with stock", ledger.Delisting, func(e *ledger.Event) { e.Stock = ledger.Int64(0) }, []string{"stock"}},
		{"delisting with a title", ledger.Delisting, func(e *ledger.Event) { e.Title = "x" }, []string{"title"}},
		{"delisting with a sales_form", ledger.Delisting, func(e *ledger.Event) { e.SalesForm = ledger.Spot }, []string{"sales_form"}},

		// stock_set
		{"stock_set stock missing", ledger.StockSet, func(e *ledger.Event) { e.Stock = nil }, []string{"stock"}},
		{"stock_set stock 0", ledger.StockSet, func(e *ledger.Event) { e.Stock = ledger.Int64(0) }, nil},
		{"stock_set stock negative", ledger.StockSet, func(e *ledger.Event) { e.Stock = ledger.Int64(-5) }, []string{"stock"}},
		{"stock_set stock past max", ledger.StockSet, func(e *ledger.Event) { e.Stock = ledger.Int64(ledger.MaxQty + 1) }, []string{"stock"}},
		{"stock_set with qty", ledger.StockSet, func(e *ledger.Event) { e.Qty = ledger.Int64(5) }, []string{"qty"}},

		// restock
		{"restock qty missing", ledger.Restock, func(e *ledger.Event) { e.Qty = nil }, []string{"qty"}},
		{"restock qty 0", ledger.Restock, func(e *ledger.Event) { e.Qty = ledger.Int64(0) }, []string{"qty"}},
		{"restock qty negative", ledger.Restock, func(e *ledger.Event) { e.Qty = ledger.Int64(-1) }, []string{"qty"}},
		{"restock qty at max", ledger.Restock, func(e *ledger.Event) { e.Qty = ledger.Int64(ledger.MaxQty) }, nil},
		{"restock qty past max", ledger.Restock, func(e *ledger.Event) { e.Qty = ledger.Int64(ledger.MaxQty + 1) }, []string{"qty"}},
		{"restock with stock", ledger.Restock, func(e *ledger.Event) { e.Stock = ledger.Int64(5) }, []string{"stock"}},

		// sale
		{"sale order_id missing", ledger.Sale, func(e *ledger.Event) { e.OrderID = "" }, []string{"order_id"}},
		{"sale order_id with a space", ledger.Sale, func(e *ledger.Event) { e.OrderID = "ks 1" }, []string{"order_id"}},
		{"sale order_id with a slash", ledger.Sale, func(e *ledger.Event) { e.OrderID = "ks/1" }, []string{"order_id"}},
		{"sale order_id with dots and colons", ledger.Sale, func(e *ledger.Event) { e.OrderID = "ks:2026.11_1-a" }, nil},
		{"sale order_id of 128", ledger.Sale, func(e *ledger.Event) { e.OrderID = long(ledger.MaxIDLen) }, nil},
		{"sale order_id of 129", ledger.Sale, func(e *ledger.Event) { e.OrderID = long(ledger.MaxIDLen + 1) }, []string{"order_id"}},
		{"sale qty missing", ledger.Sale, func(e *ledger.Event) { e.Qty = nil }, []string{"qty"}},
		{"sale qty 0", ledger.Sale, func(e *ledger.Event) { e.Qty = ledger.Int64(0) }, []string{"qty"}},
		{"sale qty past max", ledger.Sale, func(e *ledger.Event) { e.Qty = ledger.Int64(ledger.MaxQty + 1) }, []string{"qty"}},
		{"sale unit_price_fen 0", ledger.Sale, func(e *ledger.Event) { e.UnitPriceFen = 0 }, []string{"unit_price_fen"}},
		{"sale unit_price_fen negative", ledger.Sale, func(e *ledger.Event) { e.UnitPriceFen = -100 }, []string{"unit_price_fen"}},
		{"sale unit_price_fen past max", ledger.Sale, func(e *ledger.Event) { e.UnitPriceFen = ledger.MaxPriceFen + 1 }, []string{"unit_price_fen"}},
		{"sale without live_id", ledger.Sale, func(e *ledger.Event) { e.LiveID = "" }, nil},
		{"sale live_id too long", ledger.Sale, func(e *ledger.Event) { e.LiveID = long(ledger.MaxIDLen + 1) }, []string{"live_id"}},
		{"sale live_id with a space", ledger.Sale, func(e *ledger.Event) { e.LiveID = "live 1" }, []string{"live_id"}},
		{"sale without ship_by", ledger.Sale, func(e *ledger.Event) { e.ShipBy = nil }, nil},
		{"sale ship_by zero", ledger.Sale, func(e *ledger.Event) { e.ShipBy = &time.Time{} }, []string{"ship_by"}},
		{"sale ship_by 2100", ledger.Sale, func(e *ledger.Event) { e.ShipBy = ledger.Time(ledger.MaxAt) }, []string{"ship_by"}},
		{"sale parent_order_id bad", ledger.Sale, func(e *ledger.Event) { e.ParentOrderID = "p/1" }, []string{"parent_order_id"}},
		{"sale with waybill", ledger.Sale, func(e *ledger.Event) { e.Waybill = "SF1" }, []string{"waybill"}},
		{"sale with price_fen", ledger.Sale, func(e *ledger.Event) { e.PriceFen = 9900 }, []string{"price_fen"}},
		{"sale with counted", ledger.Sale, func(e *ledger.Event) { e.Counted = ledger.Int64(1) }, []string{"counted"}},

		// cancel, shipment
		{"cancel order_id missing", ledger.Cancel, func(e *ledger.Event) { e.OrderID = "" }, []string{"order_id"}},
		{"cancel order_id bad", ledger.Cancel, func(e *ledger.Event) { e.OrderID = "ks>1" }, []string{"order_id"}},
		{"cancel of the whole line", ledger.Cancel, func(e *ledger.Event) { e.Qty, e.RefundID = nil, "" }, nil},
		{"cancel qty without refund_id", ledger.Cancel, func(e *ledger.Event) { e.RefundID = "" }, []string{"refund_id"}},
		{"cancel refund_id without qty", ledger.Cancel, func(e *ledger.Event) { e.Qty = nil }, []string{"qty"}},
		{"cancel qty 0", ledger.Cancel, func(e *ledger.Event) { e.Qty = ledger.Int64(0) }, []string{"qty"}},
		{"cancel refund_id bad", ledger.Cancel, func(e *ledger.Event) { e.RefundID = "rf 1" }, []string{"refund_id"}},
		{"cancel with waybill", ledger.Cancel, func(e *ledger.Event) { e.Waybill = "SF1" }, []string{"waybill"}},
		{"shipment order_id missing", ledger.Shipment, func(e *ledger.Event) { e.OrderID = "" }, []string{"order_id"}},
		{"shipment of the whole line", ledger.Shipment, func(e *ledger.Event) { e.Qty, e.Waybill = nil, "" }, nil},
		{"shipment qty without waybill", ledger.Shipment, func(e *ledger.Event) { e.Waybill = "" }, []string{"waybill"}},
		{"shipment waybill without qty", ledger.Shipment, func(e *ledger.Event) { e.Qty = nil }, []string{"qty"}},
		{"shipment with unit_price_fen", ledger.Shipment, func(e *ledger.Event) { e.UnitPriceFen = 1 }, []string{"unit_price_fen"}},
		{"shipment with refund_id", ledger.Shipment, func(e *ledger.Event) { e.RefundID = "rf-1" }, []string{"refund_id"}},

		// return
		{"return qty missing", ledger.Return, func(e *ledger.Event) { e.Qty = nil }, []string{"qty"}},
		{"return qty 0", ledger.Return, func(e *ledger.Event) { e.Qty = ledger.Int64(0) }, []string{"qty"}},
		{"return return_id missing", ledger.Return, func(e *ledger.Event) { e.ReturnID = "" }, []string{"return_id"}},
		{"return without restocked", ledger.Return, func(e *ledger.Event) { e.Restocked = nil }, nil},
		{"return restocked 0", ledger.Return, func(e *ledger.Event) { e.Restocked = ledger.Int64(0) }, nil},
		{"return restocked = qty", ledger.Return, func(e *ledger.Event) { e.Restocked = ledger.Int64(2) }, nil},
		{"return restocked > qty", ledger.Return, func(e *ledger.Event) { e.Restocked = ledger.Int64(3) }, []string{"restocked"}},
		{"return restocked negative", ledger.Return, func(e *ledger.Event) { e.Restocked = ledger.Int64(-1) }, []string{"restocked"}},
		{"return order_id missing", ledger.Return, func(e *ledger.Event) { e.OrderID = "" }, []string{"order_id"}},

		// promise_changed
		{"promise ship_by missing", ledger.PromiseChanged, func(e *ledger.Event) { e.ShipBy = nil }, []string{"ship_by"}},
		{"promise ship_by before 2000", ledger.PromiseChanged, func(e *ledger.Event) { e.ShipBy = ledger.Time(ledger.MinAt.Add(-time.Hour)) }, []string{"ship_by"}},
		{"promise order_id missing", ledger.PromiseChanged, func(e *ledger.Event) { e.OrderID = "" }, []string{"order_id"}},
		{"promise with qty", ledger.PromiseChanged, func(e *ledger.Event) { e.Qty = ledger.Int64(1) }, []string{"qty"}},

		// safety_stock_set, restock receipt
		{"safety qty missing", ledger.SafetyStockSet, func(e *ledger.Event) { e.Qty = nil }, []string{"qty"}},
		{"safety qty 0", ledger.SafetyStockSet, func(e *ledger.Event) { e.Qty = ledger.Int64(0) }, nil},
		{"safety qty negative", ledger.SafetyStockSet, func(e *ledger.Event) { e.Qty = ledger.Int64(-2) }, []string{"qty"}},
		{"safety with stock", ledger.SafetyStockSet, func(e *ledger.Event) { e.Stock = ledger.Int64(2) }, []string{"stock"}},
		{"restock without receipt_id", ledger.Restock, func(e *ledger.Event) { e.ReceiptID = "" }, nil},
		{"restock receipt_id bad", ledger.Restock, func(e *ledger.Event) { e.ReceiptID = "GR 1" }, []string{"receipt_id"}},

		// recount
		{"recount counted missing", ledger.Recount, func(e *ledger.Event) { e.Counted = nil }, []string{"counted"}},
		{"recount counted 0", ledger.Recount, func(e *ledger.Event) { e.Counted = ledger.Int64(0) }, nil},
		{"recount counted negative", ledger.Recount, func(e *ledger.Event) { e.Counted = ledger.Int64(-1) }, []string{"counted"}},
		{"recount counted past max", ledger.Recount, func(e *ledger.Event) { e.Counted = ledger.Int64(ledger.MaxQty + 1) }, []string{"counted"}},
		{"recount without counted_by", ledger.Recount, func(e *ledger.Event) { e.CountedBy = "" }, nil},
		{"recount counted_by control character", ledger.Recount, func(e *ledger.Event) { e.CountedBy = "a\nb" }, []string{"counted_by"}},
		{"recount with qty", ledger.Recount, func(e *ledger.Event) { e.Qty = ledger.Int64(1) }, []string{"qty"}},

		// capacity_confirmed
		{"capacity supplier missing", ledger.CapacityConfirmed, func(e *ledger.Event) { e.Supplier = "" }, []string{"supplier"}},
		{"capacity supplier too long", ledger.CapacityConfirmed, func(e *ledger.Event) { e.Supplier = long(ledger.MaxIDLen + 1) }, []string{"supplier"}},
		{"capacity supplier with a space", ledger.CapacityConfirmed, func(e *ledger.Event) { e.Supplier = "factory a" }, []string{"supplier"}},
		{"capacity qty missing", ledger.CapacityConfirmed, func(e *ledger.Event) { e.Qty = nil }, []string{"qty"}},
		{"capacity qty 0", ledger.CapacityConfirmed, func(e *ledger.Event) { e.Qty = ledger.Int64(0) }, nil},
		{"capacity qty negative", ledger.CapacityConfirmed, func(e *ledger.Event) { e.Qty = ledger.Int64(-1) }, []string{"qty"}},
		{"capacity qty past max", ledger.CapacityConfirmed, func(e *ledger.Event) { e.Qty = ledger.Int64(ledger.MaxQty + 1) }, []string{"qty"}},
		{"capacity deliver_by missing", ledger.CapacityConfirmed, func(e *ledger.Event) { e.DeliverBy = nil }, []string{"deliver_by"}},
		{"capacity deliver_by zero", ledger.CapacityConfirmed, func(e *ledger.Event) { e.DeliverBy = &time.Time{} }, []string{"deliver_by"}},
		{"capacity deliver_by 2100", ledger.CapacityConfirmed, func(e *ledger.Event) { by := ledger.MaxAt; e.DeliverBy = &by }, []string{"deliver_by"}},
		{"capacity with stock", ledger.CapacityConfirmed, func(e *ledger.Event) { e.Stock = ledger.Int64(1) }, []string{"stock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := vtValid(tt.typ)
			tt.mutate(&e)
			checkFieldErrors(t, e.Validate(), tt.fields...)
		})
	}
}

// TestValidateStoredAcceptsV1Text: a supplier or live_id of free text, as
// the first contract allowed, is refused for new events and accepted in the
// stream, so that an old stream folds as it did.
func TestValidateStoredAcceptsV1Text(t *testing.T) {
	sale := vtValid(ledger.Sale)
	sale.LiveID = "live 0412 (evening)"
	conf := vtValid(ledger.CapacityConfirmed)
	conf.Supplier = "Factory A, Yiwu"
	for _, e := range []ledger.Event{sale, conf} {
		if e.Validate() == nil {
			t.Errorf("Validate(%s with free text) = nil, want the id rule", e.Type)
		}
		if err := e.ValidateStored(); err != nil {
			t.Errorf("ValidateStored(%s with free text) = %v", e.Type, err)
		}
	}
	conf.Supplier = "a\x00b"
	if conf.ValidateStored() == nil {
		t.Error("ValidateStored accepted a control character")
	}
}

// TestKey: the natural key of every type (DESIGN "Idempotency").
func TestKey(t *testing.T) {
	tests := []struct {
		typ    ledger.Type
		mutate func(e *ledger.Event)
		want   string
	}{
		{ledger.Sale, nil, "sale:shop-demo:sku_1-A:ks-10000"},
		{ledger.Cancel, nil, "cancel:shop-demo:sku_1-A:ks-10000:rf-1"},
		{ledger.Cancel, func(e *ledger.Event) { e.Qty, e.RefundID = nil, "" }, "cancel:shop-demo:sku_1-A:ks-10000:all"},
		{ledger.Shipment, nil, "shipment:shop-demo:sku_1-A:ks-10000:SF1001"},
		{ledger.Shipment, func(e *ledger.Event) { e.Qty, e.Waybill = nil, "" }, "shipment:shop-demo:sku_1-A:ks-10000:all"},
		{ledger.Return, nil, "return:shop-demo:sku_1-A:ks-10000:RT-1"},
		{ledger.Restock, nil, "restock:shop-demo:sku_1-A:GR-2026-0007"},
		{ledger.Restock, func(e *ledger.Event) { e.ReceiptID = "" }, vtID},
		{ledger.StockSet, nil, vtID},
		{ledger.PromiseChanged, nil, vtID},
	}
	for _, tt := range tests {
		e := vtValid(tt.typ)
		if tt.mutate != nil {
			tt.mutate(&e)
		}
		if got := e.Key(); got != tt.want {
			t.Errorf("%s: Key() = %q, want %q", tt.typ, got, tt.want)
		}
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	e := vtValid(ledger.Sale)
	e.ID, e.Shop, e.SKU = "", "shop demo", "tea.set"
	e.OrderID, e.Qty, e.UnitPriceFen = "", ledger.Int64(0), 0
	e.Stock = ledger.Int64(1)
	checkFieldErrors(t, e.Validate(), "id", "shop", "sku", "order_id", "qty", "unit_price_fen", "stock")

	l := vtValid(ledger.Listing)
	l.Title, l.PriceFen, l.Stock, l.ShipWithinHours = "", 0, ledger.Int64(-1), 36
	checkFieldErrors(t, l.Validate(), "title", "price_fen", "stock", "ship_within_hours")
}

func TestFieldErrorNamesValueAndRule(t *testing.T) {
	e := vtValid(ledger.Listing)
	e.ShipWithinHours = 36
	fes := ledger.FieldErrors(e.Validate())
	if len(fes) != 1 {
		t.Fatalf("FieldErrors = %v, want one", fes)
	}
	fe := fes[0]
	if fe.Field != "ship_within_hours" || fe.Value != "36" || !strings.Contains(fe.Rule, "24, 48 or 72") {
		t.Errorf("FieldError = %+v, want field ship_within_hours, value 36, rule naming 24, 48 or 72", fe)
	}
	if msg := fe.Error(); !strings.Contains(msg, "ship_within_hours") || !strings.Contains(msg, "36") {
		t.Errorf("Error() = %q, want field and value", msg)
	}
}

func TestValidateBatch(t *testing.T) {
	good, bad := vtValid(ledger.Sale), vtValid(ledger.Sale)
	bad.OrderID, bad.Qty = "ks-5003", ledger.Int64(0)
	other := vtValid(ledger.Restock)
	other.SKU = "a b"

	if err := ledger.ValidateBatch([]ledger.Event{good, vtValid(ledger.Listing)}); err != nil {
		t.Errorf("valid batch: %v", err)
	}
	err := ledger.ValidateBatch([]ledger.Event{good, bad, other})
	checkFieldErrors(t, err, "qty", "sku")
	var idx []int
	for _, fe := range ledger.FieldErrors(err) {
		idx = append(idx, fe.Index)
	}
	slices.Sort(idx)
	if !slices.Equal(idx, []int{1, 2}) {
		t.Errorf("indexes = %v, want [1 2]", idx)
	}
}

func TestCheckClock(t *testing.T) {
	e := vtValid(ledger.Sale)
	if err := e.CheckClock(vtAt.Add(-ledger.MaxFutureSkew)); err != nil {
		t.Errorf("at exactly MaxFutureSkew ahead: %v", err)
	}
	err := e.CheckClock(vtAt.Add(-ledger.MaxFutureSkew - time.Second))
	checkFieldErrors(t, err, "at")
}

func TestNormalize(t *testing.T) {
	e := ledger.Event{Type: ledger.Delisting, Shop: "s", SKU: "k"}
	e.Normalize(vtAt)
	if !e.At.Equal(vtAt) || e.ID == "" {
		t.Fatalf("normalized = %+v, want at %s and an id", e, vtAt)
	}
	if err := e.Validate(); err != nil {
		t.Errorf("normalized event invalid: %v", err)
	}
	id, at := e.ID, e.At
	e.Normalize(vtAt.Add(time.Hour))
	if e.ID != id || !e.At.Equal(at) {
		t.Errorf("Normalize changed a present id or at")
	}
}

const vtSale = `{"id":"` + vtID + `","type":"sale","shop":"shop-demo","sku":"tea-set","at":"2026-11-26T20:00:00+08:00","order_id":"ks-5002","qty":1,"unit_price_fen":25800}`

func TestDecodeEvents(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		field string // "" when the body decodes
		index int
		n     int // events decoded
	}{
		{"one object", vtSale, "", 0, 1},
		{"an array", "[" + vtSale + "," + vtSale + "]", "", 0, 2},
		{"leading white space", " \n\t[" + vtSale + "]", "", 0, 1},
		{"unknown field", `{"type":"sale","colour":"red"}`, "colour", 0, 0},
		{"unknown field in the second event", "[" + vtSale + `,{"type":"sale","sku_name":"x"}]`, "sku_name", 1, 0},
		{"qty as a string", `{"type":"sale","qty":"1"}`, "qty", 0, 0},
		{"qty as a fraction", `{"type":"sale","qty":1.5}`, "qty", 0, 0},
		{"qty as a bool", `{"type":"sale","qty":true}`, "qty", 0, 0},
		{"qty past int64", `{"type":"sale","qty":99999999999999999999}`, "qty", 0, 0},
		{"price_fen as a string", `{"type":"listing","price_fen":"99.00"}`, "price_fen", 0, 0},
		{"stock as an object", `{"type":"stock_set","stock":{}}`, "stock", 0, 0},
		{"shop as a number", `{"type":"sale","shop":7}`, "shop", 0, 0},
		{"type as a number", `{"type":5}`, "type", 0, 0},
		{"ship_within_hours as a string", `{"type":"listing","ship_within_hours":"24"}`, "ship_within_hours", 0, 0},
		{"wrong type in the second event", "[" + vtSale + `,{"counted":"7"}]`, "counted", 1, 0},
		{"at not RFC 3339", `{"type":"sale","at":"yesterday"}`, "at", 0, 0},
		{"at as a number", `{"type":"sale","at":5}`, "at", 0, 0},
		{"deliver_by not RFC 3339", `{"type":"capacity_confirmed","deliver_by":"next week"}`, "deliver_by", 0, 0},
		{"deliver_by as a number", `{"type":"capacity_confirmed","deliver_by":20261126}`, "deliver_by", 0, 0},
		{"an array of numbers", `[1]`, "body", 0, 0},
		{"a string", `"sale"`, "body", 0, 0},
		{"truncated object", `{"type":"sale",`, "body", 0, 0},
		{"truncated array", "[" + vtSale, "body", 1, 0}, // after the first, complete event
		{"bad syntax", `{"type":"sale",,}`, "body", 0, 0},
		{"empty body", "", "body", 0, 0},
		{"only white space", " \n", "body", 0, 0},
		{"empty array", `[]`, "body", 0, 0},
		{"two objects", vtSale + vtSale, "body", 0, 0},
		{"an object after an array", "[" + vtSale + "]" + vtSale, "body", 0, 0},
		{"an event too large", `{"type":"listing","title":"` + strings.Repeat("x", ledger.MaxEventBytes) + `"}`, "body", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, err := ledger.DecodeEvents([]byte(tt.body))
			if tt.field == "" {
				if err != nil || len(events) != tt.n {
					t.Fatalf("decoded %d events, err %v; want %d and no error", len(events), err, tt.n)
				}
				return
			}
			if err == nil {
				t.Fatalf("decoded %+v, want an error naming %s", events, tt.field)
			}
			if events != nil {
				t.Errorf("an error and %d events: a bad body decodes to nothing", len(events))
			}
			if !errors.Is(err, ledger.ErrInvalidEvent) {
				t.Errorf("errors.Is(%v, ErrInvalidEvent) = false", err)
			}
			fes := ledger.FieldErrors(err)
			if len(fes) == 0 {
				t.Fatalf("err %v holds no FieldError", err)
			}
			if fes[0].Field != tt.field || fes[0].Index != tt.index {
				t.Errorf("FieldError %+v (%v), want field %s at index %d", fes[0], err, tt.field, tt.index)
			}
		})
	}
}

func TestDecodeEventsBatchBound(t *testing.T) {
	batch := func(n int) []byte {
		return []byte("[" + strings.TrimSuffix(strings.Repeat(vtSale+",", n), ",") + "]")
	}
	events, err := ledger.DecodeEvents(batch(ledger.MaxBatch))
	if err != nil || len(events) != ledger.MaxBatch {
		t.Fatalf("batch of MaxBatch: %d events, err %v", len(events), err)
	}
	events, err = ledger.DecodeEvents(batch(ledger.MaxBatch + 1))
	if err == nil || events != nil {
		t.Fatalf("batch of MaxBatch+1: %d events, err %v; want an error", len(events), err)
	}
	if fes := ledger.FieldErrors(err); len(fes) != 1 || fes[0].Field != "body" || !strings.Contains(fes[0].Rule, fmt.Sprint(ledger.MaxBatch)) {
		t.Errorf("batch of MaxBatch+1: %v, want a body error naming the bound %d", err, ledger.MaxBatch)
	}
}

// TestDecodeThenValidate: decoding is strict about shape, Validate about
// rules; the scenario's bad inputs fail in one or the other, naming the field.
func TestDecodeThenValidate(t *testing.T) {
	tests := []struct{ name, body, field string }{
		{"ship_within_hours 36", `{"type":"listing","shop":"shop-demo","sku":"tea-set","title":"Tea set","price_fen":25800,"stock":3,"sales_form":"spot","ship_within_hours":36}`, "ship_within_hours"},
		{"ship_within_days 3", `{"type":"listing","shop":"shop-demo","sku":"tea-set-2","title":"Tea set 2","price_fen":25800,"stock":3,"sales_form":"presale","ship_within_days":3}`, "ship_within_days"},
		{"ship_within_days 91", `{"type":"listing","shop":"shop-demo","sku":"tea-set-2","title":"Tea set 2","price_fen":25800,"stock":3,"sales_form":"presale","ship_within_days":91}`, "ship_within_days"},
		{"sku with a dot", `{"type":"sale","shop":"shop-demo","sku":"tea.set","order_id":"ks-5001","qty":1,"unit_price_fen":25800}`, "sku"},
		{"sku with a star", `{"type":"sale","shop":"shop-demo","sku":"tea*","order_id":"ks-5001","qty":1,"unit_price_fen":25800}`, "sku"},
		{"shop with a gt", `{"type":"sale","shop":"shop>","sku":"tea-set","order_id":"ks-5001","qty":1,"unit_price_fen":25800}`, "shop"},
		{"shop with a space", `{"type":"sale","shop":"shop demo","sku":"tea-set","order_id":"ks-5001","qty":1,"unit_price_fen":25800}`, "shop"},
		{"batch with qty 0", `[{"type":"sale","shop":"shop-demo","sku":"tea-set","order_id":"ks-5002","qty":1,"unit_price_fen":25800},{"type":"sale","shop":"shop-demo","sku":"tea-set","order_id":"ks-5003","qty":0,"unit_price_fen":25800}]`, "qty"},
		{"null stock", `{"type":"stock_set","shop":"shop-demo","sku":"tea-set","stock":null}`, "stock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, err := ledger.DecodeEvents([]byte(tt.body))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			for i := range events {
				events[i].Normalize(vtAt)
			}
			err = ledger.ValidateBatch(events)
			if fields := vtFields(err); !slices.Equal(fields, []string{tt.field}) {
				t.Errorf("fields named = %v, want [%s] (err %v)", fields, tt.field, err)
			}
		})
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, typ := range ledger.Types {
		e := vtValid(typ)
		data, err := ledger.EncodeEvent(&e)
		if err != nil {
			t.Fatalf("encode %s: %v", typ, err)
		}
		got, err := ledger.DecodeEvent(data)
		if err != nil {
			t.Fatalf("decode %s (%s): %v", typ, data, err)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("round-tripped %s invalid: %v", typ, err)
		}
		again, _ := ledger.EncodeEvent(&got)
		if string(again) != string(data) {
			t.Errorf("round trip of %s:\n got %s\nwant %s", typ, again, data)
		}
	}
	// A zero stock survives the round trip (it is not dropped as empty).
	e := vtValid(ledger.StockSet)
	e.Stock = ledger.Int64(0)
	data, _ := ledger.EncodeEvent(&e)
	got, err := ledger.DecodeEvent(data)
	if err != nil || got.Stock == nil || *got.Stock != 0 {
		t.Errorf("stock_set 0 round trip: %s → %+v, %v", data, got, err)
	}
}
