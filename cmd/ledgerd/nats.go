package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// NATS bounds.
const (
	// natsReadyTimeout bounds the embedded server's start; past it ledgerd
	// does not start.
	natsReadyTimeout = 30 * time.Second
	// natsPayloadBytesMax bounds one message of the embedded server; a
	// larger publish is refused.
	natsPayloadBytesMax = 1 << 20
	// natsReconnectWait is the pause between reconnect attempts; ledgerd
	// tries for ever.
	natsReconnectWait = 250 * time.Millisecond
	// natsReconnectBufBytesMax bounds what is buffered for publishing
	// while disconnected; a publish beyond it fails.
	natsReconnectBufBytesMax = 16 << 20
)

// startEmbeddedNATS starts the embedded NATS server with JetStream, its file
// store under dataDir, listening for producers on listen. A busy address is
// refused with an error that says how to choose another or use NATS_URL.
func startEmbeddedNATS(dataDir, listen string, syncAlways bool, log *slog.Logger) (*server.Server, error) {
	host, portText, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("LEDGER_NATS_LISTEN %q: must be host:port: %w", listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("LEDGER_NATS_LISTEN %q: port must be 0 to 65535", listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	} else {
		// nats-server reports a busy port only in its log: check first, so
		// the operator gets a clear error.
		l, err := net.Listen("tcp", listen)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS cannot listen on %s (LEDGER_NATS_LISTEN): %w; another NATS server may hold it: set LEDGER_NATS_LISTEN to a free address (127.0.0.1:0 picks one), or set NATS_URL to use that server", listen, err)
		}
		l.Close()
	}
	opts := &server.Options{
		ServerName: "ledgerd",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Join(dataDir, "jetstream"),
		SyncAlways: syncAlways,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: natsPayloadBytesMax,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("configure embedded NATS: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(natsReadyTimeout) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded NATS on %s not ready within %s (LEDGER_NATS_LISTEN; or set NATS_URL to use an external server)", listen, natsReadyTimeout)
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		return nil, errors.New("embedded NATS started without JetStream: is the data directory writable? (LEDGER_DATA_DIR)")
	}
	log.Info("embedded NATS running", "client_url", s.ClientURL(), "store_dir", opts.StoreDir)
	return s, nil
}

// connectNATS connects to the embedded server in process, or to url. The
// returned channel is closed when the connection is.
func connectNATS(s *server.Server, url string, log *slog.Logger) (*nats.Conn, chan struct{}, error) {
	closed := make(chan struct{})
	opts := []nats.Option{
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
		nats.Name("ledgerd"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(natsReconnectWait),
		nats.ReconnectBufSize(natsReconnectBufBytesMax),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("NATS disconnected", "err", err) }),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "url", c.ConnectedUrlRedacted()) }),
	}
	if s != nil {
		opts = append(opts, nats.InProcessServer(s))
		url = ""
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS %s (NATS_URL): %w", redact(url), err)
	}
	return nc, closed, nil
}

// serverMajorMin and serverMinorMin name the oldest nats-server the ledger
// runs on: 2.12 brought atomic batch publishing, which the event stream
// allows. An older server ignores stream settings it does not know, so the
// ledger would run without them and without a word: ledgerd refuses to
// start on one.
const (
	serverMajorMin = 2
	serverMinorMin = 12
)

// checkServerVersion refuses a NATS server older than 2.12.
func checkServerVersion(version string) error {
	var major, minor int
	if _, err := fmt.Sscanf(version, "%d.%d", &major, &minor); err != nil {
		return fmt.Errorf("NATS server version %q (NATS_URL): cannot tell it is %d.%d or later", version, serverMajorMin, serverMinorMin)
	}
	if major < serverMajorMin || (major == serverMajorMin && minor < serverMinorMin) {
		return fmt.Errorf("NATS server version %s (NATS_URL): the ledger needs nats-server %d.%d or later (atomic batch publish, subject transforms)", version, serverMajorMin, serverMinorMin)
	}
	return nil
}
