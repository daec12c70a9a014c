package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"stockledger/consumers"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// projection is what the HTTP API needs from the read model's writer: the
// single projector (consumers.Projector) or this instance's member of the
// partitioned group (consumers.Partitioned), which answers for every shop
// from the shared store.
type projection interface {
	transport.Catalog
	Applied() uint64
	WaitApplied(ctx context.Context, seq uint64) error
	Err() error
	DeadLettered() uint64
	Held() (skus, orders int64)
}

// Bounds of the cluster settings.
const (
	replicasMax = 5
	leaseTTLMin = time.Second
	leaseTTLMax = 5 * time.Minute
)

// envDuration reads a duration from the environment; a malformed value is
// passed on as badDuration so that validation names it.
func envDuration(getenv func(string) string, name string, def time.Duration) time.Duration {
	v := getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return badDuration
	}
	return d
}

// badDuration stands for a setting that is not a duration.
const badDuration time.Duration = -1

// checkDuration refuses a duration setting outside [lo, hi], or one that
// did not parse, naming the setting and the rule.
func checkDuration(name string, d, lo, hi time.Duration) error {
	if d == badDuration {
		return fmt.Errorf("%s: must be a duration such as 30s or 2m, from %s to %s", name, lo, hi)
	}
	if d < lo || d > hi {
		return fmt.Errorf("%s %s: must be from %s to %s", name, d, lo, hi)
	}
	return nil
}

// defaultInstance names this instance after its host (a container's host
// name is its id), or "ledgerd" when the host has no name.
func defaultInstance() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "ledgerd"
}

func (c config) checkCluster() error {
	if c.Replicas < 1 || c.Replicas > replicasMax {
		return fmt.Errorf("LEDGER_REPLICAS %d: must be from 1 to %d", c.Replicas, replicasMax)
	}
	if c.Partitions < 1 || c.Partitions > transport.PartitionsMax {
		return fmt.Errorf("LEDGER_PARTITIONS %d: must be from 1 to %d", c.Partitions, transport.PartitionsMax)
	}
	if c.Partitions > 1 && c.DatabaseURL == "" {
		return fmt.Errorf("LEDGER_PARTITIONS %d: needs DATABASE_URL: partitions are folded by several instances into one shared read model", c.Partitions)
	}
	if c.Partitions > 1 && c.Instance == "" {
		return fmt.Errorf("LEDGER_INSTANCE: must not be empty with LEDGER_PARTITIONS %d", c.Partitions)
	}
	if err := checkDuration("LEDGER_LEASE_TTL", c.LeaseTTL, leaseTTLMin, leaseTTLMax); err != nil {
		return err
	}
	// Not a cluster setting, but checked with them to keep parseConfig short.
	if c.HealthMaxLag < 0 || c.HealthMaxLag > healthMaxLagMax {
		return fmt.Errorf("LEDGER_HEALTH_MAX_LAG %d: must be from 1 to %d events (0 takes the default, %d)", c.HealthMaxLag, healthMaxLagMax, DefaultHealthMaxLag)
	}
	return nil
}

// newGroup returns this instance's member of the partitioned projection, nil
// for an unpartitioned stream (the single projector folds it).
func newGroup(cfg config, nc *nats.Conn, js jetstream.JetStream, store projections.Store, popts consumers.Options) (*consumers.Partitioned, error) {
	if cfg.Partitions < 2 {
		return nil, nil
	}
	return consumers.NewPartitioned(nc, js, store, consumers.PartitionOptions{
		Partitions: cfg.Partitions, Instance: cfg.Instance, LeaseTTL: cfg.LeaseTTL, Replicas: cfg.Replicas, Projector: popts,
	})
}

// checkPartitionCount refuses to start with a partition count other than the
// one the existing event stream's events were stored under: the stored
// subjects carry the partition, so changing it on a stream that holds
// events would split a shop's history across two partitions (DEPLOY.md says
// how to change it).
func checkPartitionCount(ctx context.Context, js jetstream.JetStream, want int) error {
	st, err := js.Stream(ctx, transport.EventStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up stream %s: %w", transport.EventStream, err)
	}
	info := st.CachedInfo()
	have := transport.EventPartitions(info.Config)
	if have != want && info.State.Msgs > 0 {
		return fmt.Errorf("LEDGER_PARTITIONS %d: stream %s holds %d events stored under %d partition(s); the count is fixed for the life of the stream (see DEPLOY.md, changing the partition count)",
			want, transport.EventStream, info.State.Msgs, have)
	}
	return nil
}

// projection returns the API's view of the read model's writer.
func (s *service) projection() projection {
	if s.group != nil {
		return s.group
	}
	return s.projector
}

// partitionStates returns the partitioned group's states for /healthz and
// the metrics; nil (no interface holding a nil pointer) without partitions.
func (s *service) partitionStates() partitionStates {
	if s.group == nil {
		return nil
	}
	return s.group
}

// runProjection runs the single projector, or this instance's member of
// the partitioned group.
func (s *service) runProjection(ctx context.Context) error {
	if s.group != nil {
		return s.group.Run(ctx)
	}
	return s.projector.Run(ctx)
}
