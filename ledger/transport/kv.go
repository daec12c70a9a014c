package transport

import (
	"context"
	"errors"
	"fmt"
	"time"

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

// EnsureViewBucket creates the view bucket or updates it to ViewBucketConfig.
// On one server (R1) a new bucket's stream persists asynchronously
// (PersistMode async, which JetStream allows only on R1 and only at
// creation): the views are derived data, rewritten as their SKUs change, and
// under sync-always an fsync for every view written cost more than the batch
// it followed. A bucket made before keeps its persist mode.
func EnsureViewBucket(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.KeyValue, error) {
	if replicas(o) == 1 {
		st, err := js.Stream(ctx, viewStream)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			if _, err := js.CreateStream(ctx, viewStreamConfig(o)); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				return nil, fmt.Errorf("create key-value bucket %s: %w", ViewBucket, err)
			}
			return bindViewBucket(ctx, js)
		case err != nil:
			return nil, fmt.Errorf("look up key-value bucket %s: %w", ViewBucket, err)
		case st.CachedInfo().Config.PersistMode == jetstream.AsyncPersistMode:
			// Its persist mode cannot be updated: bind to it as it is.
			return bindViewBucket(ctx, js)
		}
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, ViewBucketConfig(o))
	if err != nil {
		return nil, fmt.Errorf("create or update key-value bucket %s: %w", ViewBucket, err)
	}
	return kv, nil
}

// viewStream is the stream behind ViewBucket.
const viewStream = "KV_" + ViewBucket

// viewStreamConfig is the stream a key-value bucket of ViewBucketConfig has,
// as nats.go makes it, with asynchronous persistence.
func viewStreamConfig(o StreamOptions) jetstream.StreamConfig {
	kv := ViewBucketConfig(o)
	return jetstream.StreamConfig{
		Name:              viewStream,
		Description:       kv.Description,
		Subjects:          []string{"$KV." + ViewBucket + ".>"},
		MaxMsgsPerSubject: int64(kv.History),
		MaxBytes:          kv.MaxBytes,
		MaxMsgSize:        kv.MaxValueSize,
		Storage:           kv.Storage,
		Replicas:          kv.Replicas,
		AllowRollup:       true,
		DenyDelete:        true,
		Duplicates:        2 * time.Minute,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		AllowDirect:       true,
		Discard:           jetstream.DiscardNew,
		PersistMode:       jetstream.AsyncPersistMode,
	}
}

func bindViewBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, ViewBucket)
	if err != nil {
		return nil, fmt.Errorf("bind key-value bucket %s: %w", ViewBucket, err)
	}
	return kv, nil
}

// SyncTargetsBucket is the key-value bucket that holds each SKU's latest
// stock sync instruction (JSON) under the key <shop>.<sku>, for as long as
// its listed and sellable differ; the key is deleted once they agree.
const SyncTargetsBucket = "STOCK_SYNC_TARGETS"

// SyncTargetKVSubject is the subject a put (or delete) of SKU's sync target
// is stored under.
func SyncTargetKVSubject(shop, sku string) string {
	return "$KV." + SyncTargetsBucket + "." + ViewKey(shop, sku)
}

// SyncTargetsConfig is the configuration of SyncTargetsBucket: the latest
// value of each key, file storage.
func SyncTargetsConfig(o StreamOptions) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:       SyncTargetsBucket,
		Description:  "stock ledger: latest stock sync instruction of each SKU whose listed and sellable differ, key <shop>.<sku>",
		History:      1,
		MaxValueSize: 4 << 10,
		MaxBytes:     o.eventMaxBytes() / 64,
		Storage:      jetstream.FileStorage,
		Replicas:     replicas(o),
	}
}

// EnsureSyncTargets creates SyncTargetsBucket or updates it to
// SyncTargetsConfig.
func EnsureSyncTargets(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, SyncTargetsConfig(o))
	if err != nil {
		return nil, fmt.Errorf("create or update key-value bucket %s: %w", SyncTargetsBucket, err)
	}
	return kv, nil
}
