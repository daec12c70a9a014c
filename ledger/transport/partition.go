package transport

import (
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"
)

// PartitionsMax bounds the number of partitions of the event stream. Every
// ledgerd instance keeps a lease loop and a checkpoint per partition, so the
// count stays small; a few per core of the projecting fleet is plenty.
const PartitionsMax = 64

// Partition returns the partition of shop among n partitions exactly as
// nats-server's {{partition(n,1)}} subject mapping computes it (FNV-1a 32 of
// the shop token, modulo n). n < 2 means one partition: 0.
func Partition(shop string, n int) int {
	if n < 2 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(shop))
	return int(h.Sum32() % uint32(n))
}

// partitionTransform maps the publish subject stock.events.<shop>.<sku> to
// the stored subject stock.events.<partition>.<shop>.<sku>.
func partitionTransform(n int) *jetstream.SubjectTransformConfig {
	return &jetstream.SubjectTransformConfig{
		Source:      EventSubjectRoot + ".*.*",
		Destination: fmt.Sprintf("%s.{{partition(%d,1)}}.{{wildcard(1)}}.{{wildcard(2)}}", EventSubjectRoot, n),
	}
}

var partitionDest = regexp.MustCompile(`\{\{\s*partition\s*\(\s*(\d+)\s*,\s*1\s*\)\s*\}\}`)

// EventPartitions reads the partition count from the event stream's
// configuration: the n of its partition(n,1) subject transform, 1 when it has
// none. Every reader of stored subjects takes the count from here, so that it
// agrees with what the server applies.
func EventPartitions(cfg jetstream.StreamConfig) int {
	if cfg.SubjectTransform == nil {
		return 1
	}
	m := partitionDest.FindStringSubmatch(cfg.SubjectTransform.Destination)
	if m == nil {
		return 1
	}
	n, err := strconv.Atoi(m[1])
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// StoredEventSubject is the subject a SKU's events are stored under in a
// stream of n partitions: the publish subject itself when n < 2, else
// stock.events.<partition>.<shop>.<sku>. Reads by subject (last message of a
// SKU, its history) and the projector's subject check use this form.
func StoredEventSubject(shop, sku string, n int) string {
	if n < 2 {
		return EventSubject(shop, sku)
	}
	return EventSubjectRoot + "." + strconv.Itoa(Partition(shop, n)) + "." + shop + "." + sku
}

// PartitionFilter is the subject filter of partition p's events.
func PartitionFilter(p int) string { return EventSubjectRoot + "." + strconv.Itoa(p) + ".>" }
