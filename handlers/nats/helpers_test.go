package nats_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	natssink "github.com/pgrelay/pgrelay/handlers/nats"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

// natsURL is the shared NATS server (JetStream enabled) the tests publish
// to, TEST_NATS_URL or the local one.
func natsURL() string {
	if u := os.Getenv("TEST_NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

// testConfig returns a configuration of a stream of the test's own, whose
// subjects are the default ones under a prefix of the test's own (streams
// on one server may not share subjects), deleted when the test ends.
func testConfig(t testing.TB, url string) natssink.Config {
	t.Helper()
	stream := strings.ToUpper(testenv.UniqueName("PGRELAY_TEST_"))
	prefix := strings.ToLower(stream)
	t.Cleanup(func() {
		nc, err := natsgo.Connect(url, natsgo.Timeout(time.Second))
		if err != nil {
			return
		}
		defer nc.Close()
		if js, err := jetstream.New(nc); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = js.DeleteStream(ctx, stream)
		}
	})
	return prefixed(natssink.Config{URL: url, Stream: stream}, prefix)
}

// prefixed puts cfg's subjects under prefix.
func prefixed(cfg natssink.Config, prefix string) natssink.Config {
	cfg.Subjects = []string{prefix + ".*.*.cdc_events", prefix + ".orders.*"}
	cfg.Subject = func(e *relay.Event) string { return prefix + "." + e.Channel() }
	return cfg
}

func newHandler(t testing.TB, cfg natssink.Config) *natssink.Handler {
	t.Helper()
	h, err := natssink.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.OnClose(context.Background()) })
	return h
}

// rows returns insert events of table s.t with the given ids.
func rows(table string, ids ...int64) []relay.Event {
	out := make([]relay.Event, len(ids))
	for i, id := range ids {
		out[i] = relay.Event{ID: id, Txid: 1, Timestamp: time.Unix(1, 0), Schema: "s", Table: table,
			Action: relay.ActionInsert, Key: json.RawMessage(fmt.Sprint(id)),
			Data: json.RawMessage(fmt.Sprintf(`{"id":%d}`, id))}
	}
	return out
}

// span returns the ids from..to.
func span(from, to int64) []int64 {
	ids := make([]int64, 0, to-from+1)
	for id := from; id <= to; id++ {
		ids = append(ids, id)
	}
	return ids
}

// stored is a message of the stream.
type stored struct {
	Subject string
	MsgID   string
	EventID int64
	Payload string
}

// jetStream connects to url for a test's own look at the streams.
func jetStream(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := natsgo.Connect(url, natsgo.Timeout(2*time.Second))
	require.NoError(t, err, "connect to NATS at %s (set TEST_NATS_URL)", url)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

// streamCount returns how many messages stream holds.
func streamCount(t testing.TB, ctx context.Context, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	s, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	return info.State.Msgs
}

// readStream returns every message of stream, in stream order, read with
// an ordered consumer.
func readStream(t testing.TB, ctx context.Context, js jetstream.JetStream, stream string) []stored {
	t.Helper()
	total := streamCount(t, ctx, js, stream)
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	out := make([]stored, 0, total)
	for uint64(len(out)) < total {
		batch, err := c.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		require.NoError(t, err)
		for m := range batch.Messages() {
			var ev struct {
				EventID int64 `json:"event_id"`
			}
			require.NoError(t, json.Unmarshal(m.Data(), &ev))
			out = append(out, stored{Subject: m.Subject(), MsgID: m.Headers().Get(jetstream.MsgIDHeader),
				EventID: ev.EventID, Payload: string(m.Data())})
		}
		require.NoError(t, batch.Error())
		require.NoError(t, ctx.Err())
	}
	return out
}

// idsBySubject returns the event ids of msgs per subject, in order.
func idsBySubject(msgs []stored) map[string][]int64 {
	out := map[string][]int64{}
	for _, m := range msgs {
		out[m.Subject] = append(out[m.Subject], m.EventID)
	}
	return out
}

// natsServer is a throw-away nats-server with JetStream, for tests that
// stop the broker.
type natsServer struct {
	t    testing.TB
	port int
	dir  string
	cmd  *exec.Cmd
}

// startNATSServer runs nats-server -js on a free port with its store in a
// directory of the test's own, stopped when the test ends.
func startNATSServer(t testing.TB) *natsServer {
	t.Helper()
	if _, err := exec.LookPath("nats-server"); err != nil {
		t.Skip("nats-server is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	s := &natsServer{t: t, port: port, dir: t.TempDir()}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

// start starts the server (again, on the same port and store) and waits
// until JetStream answers.
func (s *natsServer) start() {
	s.t.Helper()
	s.cmd = exec.Command("nats-server", "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-sd", s.dir)
	require.NoError(s.t, s.cmd.Start())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	testenv.WaitFor(s.t, ctx, "nats-server to accept JetStream requests", func() bool {
		nc, err := natsgo.Connect(s.url(), natsgo.Timeout(200*time.Millisecond))
		if err != nil {
			return false
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return false
		}
		actx, acancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer acancel()
		_, err = js.AccountInfo(actx)
		return err == nil
	})
}

// kill stops the server with SIGKILL.
func (s *natsServer) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
	s.cmd = nil
}

func (s *natsServer) stop() { s.kill() }
