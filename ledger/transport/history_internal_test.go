package transport

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestReadFromLeaderMatchesDirect: the stream leader's reads (the fallback
// when a replica answers short) give the same messages, headers included,
// as a page of direct gets.
func TestReadFromLeaderMatchesDirect(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	defer s.Shutdown()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, DeadStreamConfig(StreamOptions{})); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		subj := DeadSubject("stock.events.s.k")
		if i%3 == 0 {
			subj = DeadSubject("stock.events.s.other")
		}
		m := nats.NewMsg(subj)
		m.Header.Set(HeaderDeadSeq, fmt.Sprint(100+i))
		m.Header.Set(HeaderDeadReason, "reason "+fmt.Sprint(i))
		m.Data = []byte(fmt.Sprintf(`{"n":%d}`, i))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	subj := DeadSubject("stock.events.s.k")
	show := func(m *jetstream.RawStreamMsg) string {
		return fmt.Sprintf("%d %s %s %s %s %d", m.Sequence, m.Subject, m.Header.Get(HeaderDeadSeq), m.Header.Get(HeaderDeadReason), m.Data, m.Time.UnixNano())
	}
	var direct, leader []string
	if _, _, err := readPage(ctx, js, DeadStream, subj, 1, 30, 1000, func(m *jetstream.RawStreamMsg) error { direct = append(direct, show(m)); return nil }); err != nil {
		t.Fatal(err)
	}
	got, next, err := readFromLeader(ctx, nc, DeadStream, subj, 1, 29, 1000, func(m *jetstream.RawStreamMsg) error { leader = append(leader, show(m)); return nil })
	if err != nil || got != 19 || next != 30 {
		t.Fatalf("readFromLeader: %d messages, next %d, %v; want 19 up to seq 29, next 30", got, next, err)
	}
	if fmt.Sprint(direct[:19]) != fmt.Sprint(leader) {
		t.Fatalf("leader read\n%v\nwant\n%v", leader, direct[:19])
	}
}
