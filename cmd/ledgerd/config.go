package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"stockledger/consumers"
	"stockledger/ledger/transport"
	"stockledger/projections"
)

// envInt reads a whole number from the environment; a malformed value is
// passed on as -1 so that validation names it.
func envInt(getenv func(string) string, name string, def int64) int64 {
	v := getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// selloutSoonMinutesMax bounds the sellout_soon threshold: a week. A
// larger setting is refused at start.
const selloutSoonMinutesMax = 7 * 24 * 60

// Bounds of LEDGER_DUPLICATE_WINDOW. Below a second the publisher's own
// retries would be stored twice (harmless to the figures, a waste of the
// stream); the stream keeps every id of the window in memory, so an hour at
// flash-sale rates would not fit.
const (
	duplicateWindowMin = time.Second
	duplicateWindowMax = 10 * time.Minute
)

// Durability modes of the embedded server.
const (
	syncInterval = "interval"
	syncAlways   = "always"
)

// config is every setting of ledgerd. Environment variables set the
// defaults; flags of the same meaning override them.
type config struct {
	HTTPAddr    string
	DataDir     string
	NATSListen  string
	NATSURL     string
	DatabaseURL string
	Sync        string
	StreamBytes int64
	// DuplicateWindow is the event stream's duplicate window.
	DuplicateWindow time.Duration
	LogLevel        slog.Level
	// SelloutSoon is the sellout_soon threshold; zero disables the alert.
	SelloutSoon time.Duration
	// FulfilmentRiskPct is the fulfilment_risk threshold (percent of a
	// shop's open lines late or unserved); zero disables the alert.
	FulfilmentRiskPct int
	// TokensFile lists bearer tokens and their shops (auth.go).
	TokensFile string
	// PprofAddr serves the Go profiles on a loopback address; empty: off.
	PprofAddr string
	// Cluster and partitioned projection (see partitioned.go, DEPLOY.md).
	Replicas   int
	Partitions int
	Instance   string
	LeaseTTL   time.Duration
	// HealthMaxLag: /healthz is degraded while the projection, or one of
	// its partitions, is more events behind its stream.
	HealthMaxLag int64
}

// healthMaxLag is HealthMaxLag, DefaultHealthMaxLag when zero.
func (c config) healthMaxLag() uint64 {
	if c.HealthMaxLag <= 0 {
		return DefaultHealthMaxLag
	}
	return uint64(c.HealthMaxLag)
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var c config
	var level string
	fs := flag.NewFlagSet("ledgerd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.HTTPAddr, "http", env("LEDGER_HTTP_ADDR", "127.0.0.1:8080"), "HTTP listen address (LEDGER_HTTP_ADDR)")
	fs.StringVar(&c.DataDir, "data", env("LEDGER_DATA_DIR", "./data"), "data directory of the embedded NATS server (LEDGER_DATA_DIR)")
	fs.StringVar(&c.NATSListen, "nats-listen", env("LEDGER_NATS_LISTEN", "127.0.0.1:4222"), "client address of the embedded NATS server, for producers (LEDGER_NATS_LISTEN)")
	fs.StringVar(&c.NATSURL, "nats-url", env("NATS_URL", ""), "external NATS server or cluster; empty runs the embedded server (NATS_URL)")
	fs.StringVar(&c.DatabaseURL, "database-url", env("DATABASE_URL", ""), "Postgres read model; empty keeps it in memory (DATABASE_URL)")
	fs.StringVar(&c.Sync, "sync", env("LEDGER_SYNC", syncInterval), "embedded JetStream durability: interval (fsync every 2 min) or always (fsync every write) (LEDGER_SYNC)")
	fs.Int64Var(&c.StreamBytes, "stream-max-bytes", envInt(getenv, "LEDGER_STREAM_MAX_BYTES", transport.DefaultEventMaxBytes), "bound of the event stream in bytes; when full it refuses new events (LEDGER_STREAM_MAX_BYTES)")
	fs.DurationVar(&c.DuplicateWindow, "duplicate-window", envDuration(getenv, "LEDGER_DUPLICATE_WINDOW", transport.DefaultEventDuplicateWindow),
		"how long the event stream keeps message ids to drop repeats (held in server memory); no figure depends on it (LEDGER_DUPLICATE_WINDOW)")
	fs.IntVar(&c.FulfilmentRiskPct, "fulfilment-risk-pct", int(envInt(getenv, "LEDGER_FULFILMENT_RISK_PCT", projections.DefaultFulfilmentRiskPct)),
		"raise fulfilment_risk when this percent of a shop's open lines (at least 20) are late or unserved; 0 disables (LEDGER_FULFILMENT_RISK_PCT)")
	selloutMinutes := fs.Int64("sellout-soon-minutes", envInt(getenv, "LEDGER_SELLOUT_SOON_MINUTES", int64(projections.DefaultSelloutSoon/time.Minute)),
		"raise sellout_soon when a listed SKU's real stock or capacity runs out within this many minutes at the pace of the last 5 minutes; 0 disables (LEDGER_SELLOUT_SOON_MINUTES)")
	fs.StringVar(&c.TokensFile, "tokens-file", env("LEDGER_TOKENS_FILE", ""), "file of bearer tokens and the shops each may read and write; required beyond loopback (LEDGER_TOKENS_FILE)")
	fs.IntVar(&c.Replicas, "replicas", int(envInt(getenv, "LEDGER_REPLICAS", 1)), "replicas of the streams and the lease bucket: 1, or 3 on a 3-node cluster (LEDGER_REPLICAS)")
	fs.IntVar(&c.Partitions, "partitions", int(envInt(getenv, "LEDGER_PARTITIONS", 1)), "partitions of the event stream by shop; 1 folds the whole stream in this process (LEDGER_PARTITIONS)")
	fs.StringVar(&c.Instance, "instance", env("LEDGER_INSTANCE", defaultInstance()), "name of this instance among those sharing the partitions (LEDGER_INSTANCE)")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", envDuration(getenv, "LEDGER_LEASE_TTL", consumers.DefaultLeaseTTL), "how long a dead instance keeps its partitions before another takes them (LEDGER_LEASE_TTL)")
	fs.Int64Var(&c.HealthMaxLag, "health-max-lag", envInt(getenv, "LEDGER_HEALTH_MAX_LAG", DefaultHealthMaxLag), "/healthz is degraded while the projection or a partition is more events behind the stream (LEDGER_HEALTH_MAX_LAG)")
	fs.StringVar(&c.PprofAddr, "pprof", env("LEDGER_PPROF_ADDR", ""), "serve the Go runtime's profiles (/debug/pprof/) on this loopback address; empty: off (LEDGER_PPROF_ADDR)")
	fs.StringVar(&level, "log-level", env("LEDGER_LOG_LEVEL", "info"), "debug, info, warn or error (LEDGER_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if c.PprofAddr != "" && !isLoopback(c.PprofAddr) {
		return c, fmt.Errorf("LEDGER_PPROF_ADDR %s: must be a loopback address (127.0.0.1:PORT): the profiles need no token", c.PprofAddr)
	}
	if c.Sync != syncInterval && c.Sync != syncAlways {
		return c, fmt.Errorf("LEDGER_SYNC %q: must be %s or %s", c.Sync, syncInterval, syncAlways)
	}
	if err := checkDuration("LEDGER_DUPLICATE_WINDOW", c.DuplicateWindow, duplicateWindowMin, duplicateWindowMax); err != nil {
		return c, err
	}
	if c.StreamBytes < 1<<20 {
		return c, fmt.Errorf("LEDGER_STREAM_MAX_BYTES %d: must be at least 1 MiB (1048576)", c.StreamBytes)
	}
	if *selloutMinutes < 0 || *selloutMinutes > selloutSoonMinutesMax {
		return c, fmt.Errorf("LEDGER_SELLOUT_SOON_MINUTES %d: must be from 0 (off) to %d", *selloutMinutes, selloutSoonMinutesMax)
	}
	c.SelloutSoon = time.Duration(*selloutMinutes) * time.Minute
	if c.FulfilmentRiskPct < 0 || c.FulfilmentRiskPct > 100 {
		return c, fmt.Errorf("LEDGER_FULFILMENT_RISK_PCT %d: must be a whole percent from 0 (off) to 100", c.FulfilmentRiskPct)
	}
	if err := c.checkCluster(); err != nil {
		return c, err
	}
	if err := c.LogLevel.UnmarshalText([]byte(level)); err != nil {
		return c, fmt.Errorf("LEDGER_LOG_LEVEL %q: must be debug, info, warn or error", level)
	}
	return c, nil
}
