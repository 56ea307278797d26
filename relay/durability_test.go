package relay_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// childEnv, when set to a database URL, makes the test binary run a relay
// that prints each delivered event id on stdout, instead of the tests: the
// crash test kills that process with SIGKILL.
const childEnv = "PGRELAY_TEST_RELAY_CHILD"

func TestMain(m *testing.M) {
	if url := os.Getenv(childEnv); url != "" {
		if err := runChild(url); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	// go-redis reports its own dial retries; the tests check errors.
	redis.SetLogger(quietRedisLogger{})
	os.Exit(m.Run())
}

type quietRedisLogger struct{}

func (quietRedisLogger) Printf(context.Context, string, ...any) {}

// stdoutHandler writes a batch's ids (or whole events, with json) and
// flushes once per batch: what reached the pipe was accepted.
type stdoutHandler struct {
	relay.BaseHandler
	w    *bufio.Writer
	json bool
}

func (h *stdoutHandler) OnEvents(_ context.Context, events []relay.Event) error {
	for _, e := range events {
		if h.json {
			h.w.Write(e.AppendJSON(h.w.AvailableBuffer()))
		} else {
			h.w.WriteString(strconv.FormatInt(e.ID, 10))
		}
		h.w.WriteByte('\n')
	}
	return h.w.Flush()
}

// childTimingEnv, set next to childEnv, gives the child relay the batch
// size and the timings of leaseTestConfig.
const childTimingEnv = "PGRELAY_TEST_RELAY_CHILD_TIMING"

func runChild(url string) error {
	cfg, h := relay.Config{DatabaseURL: url, BatchSize: 500}, &stdoutHandler{w: bufio.NewWriter(os.Stdout)}
	if os.Getenv(childJSONEnv) != "" {
		cfg.BatchSize, h.json = mirrorBatchSize, true
	}
	if os.Getenv(childTimingEnv) != "" {
		cfg = leaseTestConfig(url)
		// Shown when a leadership test fails: who took over when.
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("child", os.Getpid())
	}
	handlers := []relay.EventHandler{h}
	if stream := os.Getenv(childStreamEnv); stream != "" {
		// The stream first: what the child prints, the stream has.
		sink, err := streamChildSink(stream)
		if err != nil {
			return err
		}
		cfg.BatchSize = 500
		handlers = []relay.EventHandler{sink, h}
	}
	r, err := relay.New(cfg, handlers...)
	if err != nil {
		return err
	}
	return r.Run(context.Background())
}

// TestRelayKilledMidDrain kills a relay process with SIGKILL while it drains
// a backlog, starts another, and checks that every event arrives, at most a
// batch of them twice.
func TestRelayKilledMidDrain(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const total = 50_000
	f.exec(t, `INSERT INTO items SELECT g, 'x' FROM generate_series(1, $1::bigint) g`, total)

	seen := map[int64]int{}
	lines := 0
	start := func() (*exec.Cmd, *bufio.Scanner) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+f.url)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		return cmd, bufio.NewScanner(out)
	}
	read := func(sc *bufio.Scanner) bool {
		if !sc.Scan() {
			return false
		}
		id, err := strconv.ParseInt(sc.Text(), 10, 64)
		require.NoError(t, err)
		seen[id]++
		lines++
		return true
	}

	first, out := start()
	for lines < total/5 && read(out) {
	}
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	for read(out) { // what the pipe still holds was delivered too
	}
	_ = first.Wait()
	require.Less(t, len(seen), total, "killed before the end of the drain")

	second, out := start()
	defer func() {
		_ = second.Process.Signal(syscall.SIGTERM)
		_ = second.Wait()
	}()
	for len(seen) < total && read(out) {
	}
	// Counted once the relay has nothing left to deliver and has ended,
	// with everything it wrote read, so that a repeat arriving late counts
	// too.
	f.waitDelivered(t, testenv.Context(t), "")
	require.NoError(t, second.Process.Signal(syscall.SIGTERM))
	for read(out) {
	}
	require.Len(t, seen, total, "every event delivered, and no other")
	duplicates := lines - total
	t.Logf("SIGKILL mid-drain: %d events delivered twice (batch size 500)", duplicates)
	require.LessOrEqual(t, duplicates, 500, "at most one batch again")
}

// TestRelayCloseDuringDrain closes the relay in the middle of a backlog:
// it stops, OnClose runs once, and exactly the delivered events are
// recorded as delivered.
func TestRelayCloseDuringDrain(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	const total = 20_000
	f.exec(t, `INSERT INTO items SELECT g, 'x' FROM generate_series(1, $1::bigint) g`, total)
	c := newCollector()
	r, err := relay.New(relay.Config{DatabaseURL: f.url, BatchSize: 100}, c)
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	c.waitCount(t, ctx, 1000)
	closeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, r.Close(closeCtx))
	require.NoError(t, r.Close(closeCtx), "Close twice is fine")
	require.EqualValues(t, 1, c.closes.Load())

	requireNoDuplicates(t, c.snapshot()) // closed, the relay delivers nothing more
	delivered := len(c.snapshot())
	require.Less(t, delivered, total, "stopped before the end")
	cur, err := sqlkit.LoadCursor(ctx, f.pool, relay.DefaultName)
	require.NoError(t, err)
	pending, _, err := sqlkit.Backlog(ctx, f.pool, cur)
	require.NoError(t, err)
	require.EqualValues(t, total-delivered, pending, "nothing undelivered is marked delivered, nothing delivered is left pending")
}

// startRedisServer runs a throw-away redis-server on a free port and returns
// its address and a function that stops it.
func startRedisServer(t *testing.T, port int) (addr string, stop func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed")
	}
	if port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port = ln.Addr().(*net.TCPAddr).Port
		require.NoError(t, ln.Close())
	}
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"))
	require.NoError(t, cmd.Start())
	addr = "127.0.0.1:" + strconv.Itoa(port)
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	for c.Ping(context.Background()).Err() != nil {
		if cmd.ProcessState != nil {
			t.Fatal("redis-server exited")
		}
		time.Sleep(10 * time.Millisecond) // polling a starting server; there is no signal to wait on
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(stop)
	return addr, stop
}

// TestRelayWaitsOutRedisDown stops a test-owned Redis under write load and
// starts it again: the relay retries, the outbox holds the backlog, and
// every event is published once Redis is back.
func TestRelayWaitsOutRedisDown(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	addr, stop := startRedisServer(t, 0)
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: 1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	acts := newActivitySignal()
	// The collector comes after Redis: it sees an event only once Redis
	// has accepted it.
	c := newCollector()
	r, err := relay.New(relay.Config{DatabaseURL: f.url, RetryInterval: 200 * time.Millisecond, Observer: acts.observe},
		redisSink(t, rdb), c)
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	defer func() { require.NoError(t, r.Close(context.Background())) }()

	f.exec(t, `INSERT INTO items SELECT g, 'before' FROM generate_series(1, 100) g`)
	f.waitExactly(t, ctx, c, 100)

	port, _ := strconv.Atoi(addr[len("127.0.0.1:"):])
	stop()
	for i := range 20 {
		f.exec(t, `INSERT INTO items SELECT g, 'down' FROM generate_series($1::bigint, $1 + 49) g`, 1000+i*50)
	}
	acts.wait(t, ctx, relay.ActivityHandlerFailed)
	var pending int
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT count(*) FROM cdc.events WHERE data->>'v' = 'down'`).Scan(&pending))
	require.Equal(t, 1000, pending, "the outbox holds the backlog")
	require.Len(t, c.snapshot(), 100)

	startRedisServer(t, port)
	f.waitExactly(t, ctx, c, 1100)
}
