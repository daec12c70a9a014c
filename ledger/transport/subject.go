package transport

import "strings"

// Subject roots. Every subject of the ledger is a root followed by tokens
// that passed Validate, so no dot, wildcard or space reaches a subject.
const (
	EventSubjectRoot = "stock.events"
	ViewSubjectRoot  = "stock.view"
	AlertSubjectRoot = "stock.alerts"
	DeadSubjectRoot  = "stock.dead"
	SyncSubjectRoot  = "stock.sync"
)

// SyncSubject is the subject a SKU's stock sync instructions are published
// on.
func SyncSubject(shop, sku string) string { return SyncSubjectRoot + "." + shop + "." + sku }

// SyncShopFilter is the subject filter of one shop's sync instructions.
func SyncShopFilter(shop string) string { return SyncSubjectRoot + "." + shop + ".>" }

// EventSubject is the subject one SKU's events are published on.
func EventSubject(shop, sku string) string { return EventSubjectRoot + "." + shop + "." + sku }

// ViewSubject is the subject a SKU's projected view is published on after
// every change.
func ViewSubject(shop, sku string) string { return ViewSubjectRoot + "." + shop + "." + sku }

// AlertSubject is the subject alerts of one kind in one shop are published on.
func AlertSubject(shop, kind string) string { return AlertSubjectRoot + "." + shop + "." + kind }

// ParseEventSubject splits stock.events.<shop>.<sku> into shop and sku; ok is
// false for any other shape.
func ParseEventSubject(subject string) (shop, sku string, ok bool) {
	rest, found := strings.CutPrefix(subject, EventSubjectRoot+".")
	if !found {
		return "", "", false
	}
	shop, sku, found = strings.Cut(rest, ".")
	if !found || shop == "" || sku == "" || strings.Contains(sku, ".") {
		return "", "", false
	}
	return shop, sku, true
}

// DeadSubject is the subject a message refused by the projector is
// dead-lettered on: its stored subject under DeadSubjectRoot, so that one
// SKU's refusals are read by subject (stock.events.<shop>.<sku> becomes
// stock.dead.events.<shop>.<sku>).
func DeadSubject(stored string) string {
	return DeadSubjectRoot + ".events" + strings.TrimPrefix(stored, EventSubjectRoot)
}
