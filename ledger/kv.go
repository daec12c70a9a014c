package ledger

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// ViewBucket is the JetStream key-value bucket that holds each SKU's current
// view (the JSON of GET /v1/shops/{shop}/skus/{sku}) under the key
// <shop>.<sku>. The projector writes it after each commit; a dashboard reads
// the last state of every SKU at once and then watches for changes.
const ViewBucket = "STOCK_VIEWS"

// viewValueMax bounds one view in the bucket; a view is well under 4 KiB.
const viewValueMax = 64 << 10

// ViewKey is the key of one SKU's view in ViewBucket. Shop and sku passed
// Validate, so the key has exactly two tokens.
func ViewKey(shop, sku string) string { return shop + "." + sku }

// ViewKVSubject is the subject a put of ViewKey(shop, sku) is stored under:
// publishing on it is a put without a round trip per key.
func ViewKVSubject(shop, sku string) string { return "$KV." + ViewBucket + "." + ViewKey(shop, sku) }

// ViewBucketConfig is the configuration of ViewBucket: the latest value of
// each key only, file storage. The views are derived, so the bucket can be
// deleted and is written again by the projector.
func ViewBucketConfig(o StreamOptions) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:       ViewBucket,
		Description:  "stock ledger: current view of each SKU, key <shop>.<sku>",
		History:      1,
		MaxValueSize: viewValueMax,
		MaxBytes:     o.eventMaxBytes() / 16,
		Storage:      jetstream.FileStorage,
		Replicas:     replicas(o),
	}
}

// EnsureViewBucket creates ViewBucket or updates it to ViewBucketConfig.
func EnsureViewBucket(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, ViewBucketConfig(o))
	if err != nil {
		return nil, fmt.Errorf("create or update key-value bucket %s: %w", ViewBucket, err)
	}
	return kv, nil
}
