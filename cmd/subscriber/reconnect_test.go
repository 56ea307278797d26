package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
)

// testServer is a throw-away redis-server of one test, on a port of its
// own, that can be stopped and started again. Its data survives a restart:
// every write is in its append-only file (fsync'd each time) in the test's
// temporary directory.
type testServer struct {
	port   int
	dir    string
	cmd    *exec.Cmd
	log    *lineLog
	exited chan struct{}
}

// startTestServer starts a server for the test, killed when the test ends,
// and returns it with a client of it. Without redis-server installed the
// test is skipped.
func startTestServer(t *testing.T, ctx context.Context) (*testServer, *redis.Client) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &testServer{port: l.Addr().(*net.TCPAddr).Port, dir: t.TempDir()}
	require.NoError(t, l.Close())
	s.start(t, ctx)
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.port)})
	t.Cleanup(func() { _ = rdb.Close() })
	return s, rdb
}

// url returns the server's Redis URL.
func (s *testServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port) }

// start starts the server and waits until it accepts connections (after
// loading its data).
func (s *testServer) start(t *testing.T, ctx context.Context) {
	t.Helper()
	s.log, s.exited = newLineLog(), make(chan struct{})
	s.cmd = exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", s.dir)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	require.NoError(t, s.cmd.Start())
	go func() {
		_ = s.cmd.Wait()
		s.log.end()
		close(s.exited)
	}()
	s.log.waitFor(t, ctx, "Ready to accept connections")
}

// stop shuts the server down (SIGTERM: it closes every connection) and
// waits until it has exited.
func (s *testServer) stop(t *testing.T, ctx context.Context) {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-s.exited:
	case <-ctx.Done():
		t.Fatalf("redis-server on port %d did not stop:\n%s", s.port, s.log)
	}
}

// TestStreamReconnects stops Redis while the subscriber reads a stream and
// starts it again: the subscriber says so once each way, and prints every
// entry once, including those added before it was back.
func TestStreamReconnects(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name string
		args []string
	}{
		{"xread", nil},
		{"group", []string{"--group", "g"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			ctx := testenv.Context(t)
			srv, rdb := startTestServer(t, ctx)
			const table, stream = "users", "public.users.cdc_events"
			events := inserts(table, 1, 9)

			r := runApp(ctx, append(append([]string{"--redis-url", srv.url(), "--stream", "--from", "0"}, mode.args...), table)...)
			r.stderr.waitFor(t, ctx, "reading stream "+stream)
			xadd(t, ctx, rdb, stream, events[:3]...)
			r.stdout.waitLines(t, ctx, 3)

			srv.stop(t, ctx)
			r.stderr.waitFor(t, ctx, "lost connection to redis")
			srv.start(t, ctx)
			xadd(t, ctx, rdb, stream, events[3:6]...)
			r.stderr.waitFor(t, ctx, "reconnected to redis\n")
			r.stdout.waitLines(t, ctx, 6)
			xadd(t, ctx, rdb, stream, events[6:]...)
			r.stdout.waitLines(t, ctx, 9)
			require.NoError(t, r.stop(t, ctx))

			assert.Equal(t, events, r.stdout.lines())
			assert.Equal(t, 1, strings.Count(r.stderr.String(), "lost connection"), r.stderr.String())
			assert.Equal(t, 1, strings.Count(r.stderr.String(), "reconnected"), r.stderr.String())
			if mode.name == "group" {
				pending, err := rdb.XPending(ctx, stream, "g").Result()
				require.NoError(t, err, "%s\n%s", r.stderr, srv.log)
				assert.Zero(t, pending.Count)
			}
		})
	}
}

// TestPubSubReconnects stops Redis under a pub/sub subscriber and starts
// it again: the subscriber stays, subscribes again, and prints what is
// published from then on.
func TestPubSubReconnects(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	srv, rdb := startTestServer(t, ctx)
	const table, channel = "users", "public.users.cdc_events"
	events := inserts(table, 1, 2)

	r := runApp(ctx, "--redis-url", srv.url(), table)
	r.stderr.waitFor(t, ctx, "subscribed to "+channel)
	require.NoError(t, rdb.Publish(ctx, channel, events[0]).Err())
	r.stdout.waitLines(t, ctx, 1)

	srv.stop(t, ctx)
	r.stderr.waitFor(t, ctx, "lost connection to redis")
	srv.start(t, ctx)
	r.stderr.waitFor(t, ctx, "reconnected to redis; subscribed again")
	require.NoError(t, rdb.Publish(ctx, channel, events[1]).Err())
	r.stdout.waitLines(t, ctx, 2)
	require.NoError(t, r.stop(t, ctx))
	assert.Equal(t, events, r.stdout.lines())
	assert.Equal(t, 1, strings.Count(r.stderr.String(), "lost connection"), r.stderr.String())
}
