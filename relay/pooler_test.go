package relay_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

// startPgBouncer runs a throw-away PgBouncer in transaction mode in front
// of the test server and returns dbURL rewritten to go through it.
func startPgBouncer(t *testing.T, dbURL string) string {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		t.Skip("pgbouncer is not installed")
	}
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	host, port, err := net.SplitHostPort(u.Host)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	listenPort := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())

	// Not t.TempDir: PgBouncer runs as another user when we are root, and
	// must reach its files.
	dir, err := os.MkdirTemp("", "pgrelay-pgbouncer-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o777))
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%s user=%s
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = any
pool_mode = transaction
max_client_conn = 50
default_pool_size = 10
logfile = %s
pidfile = %s
`, host, port, u.User.Username(), listenPort, filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
	cfg := filepath.Join(dir, "pgbouncer.ini")
	require.NoError(t, os.WriteFile(cfg, []byte(ini), 0o644))
	args := []string{cfg}
	if cur, err := user.Current(); err == nil && cur.Uid == "0" {
		args = []string{"-u", "postgres", cfg} // PgBouncer refuses to run as root
	}
	cmd := exec.Command(bin, args...)
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(listenPort))
	q := u.Query()
	// PgBouncer 1.18 in transaction mode cannot keep prepared statements.
	q.Set("default_query_exec_mode", "simple_protocol")
	u.RawQuery = q.Encode()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgx.Connect(ctx, u.String())
		cancel()
		if err == nil {
			_ = c.Close(context.Background())
			return u.String()
		}
		select {
		case werr := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			t.Fatalf("pgbouncer exited (%v): %v\n%s", werr, err, log)
		case <-time.After(20 * time.Millisecond): // polling a starting server; there is no signal to wait on
		}
	}
}

// TestRelayFallsBackToPollingBehindPooler runs the relay through PgBouncer
// in transaction mode, where LISTEN cannot work: the relay says so once and
// delivers everything by polling.
func TestRelayFallsBackToPollingBehindPooler(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	pooled := startPgBouncer(t, f.url)
	acts := newActivitySignal()
	c := newCollector()
	r, err := relay.New(relay.Config{
		DatabaseURL:      pooled,
		PollInterval:     50 * time.Millisecond,
		WatchdogInterval: 100 * time.Millisecond,
		Timeout:          500 * time.Millisecond,
		Observer:         acts.observe,
	}, c)
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	defer func() { require.NoError(t, r.Close(context.Background())) }()

	acts.wait(t, ctx, relay.ActivityPolling)
	for i := range 5 {
		f.exec(t, `INSERT INTO items SELECT g, 'x' FROM generate_series($1::bigint, $1 + 99) g`, i*100)
	}
	f.waitExactly(t, ctx, c, 500)
	require.EqualValues(t, 1, c.connects.Load(), "no reconnects: polling is a steady state")
}
