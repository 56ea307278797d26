package nats_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	natssink "github.com/pgrelay/pgrelay/handlers/nats"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// childEnv, when set to a database URL, makes the test binary run a relay
// publishing to the stream named by childStreamEnv, instead of the tests:
// the crash test kills that process with SIGKILL.
const (
	childEnv       = "PGRELAY_NATS_TEST_CHILD"
	childStreamEnv = "PGRELAY_NATS_TEST_CHILD_STREAM"
)

func TestMain(m *testing.M) {
	if url := os.Getenv(childEnv); url != "" {
		if err := runChild(url, os.Getenv(childStreamEnv)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// childConfig is the handler configuration of the crash test's relays.
func childConfig(stream string) natssink.Config {
	return prefixed(natssink.Config{URL: natsURL(), Stream: stream}, strings.ToLower(stream))
}

func runChild(url, stream string) error {
	h, err := natssink.New(childConfig(stream))
	if err != nil {
		return err
	}
	r, err := relay.New(relay.Config{DatabaseURL: url, BatchSize: 500}, h)
	if err != nil {
		return err
	}
	return r.Run(context.Background())
}

// itemsDatabase returns a migrated database whose table public.items,
// captured, holds total rows, and a pool on it.
func itemsDatabase(t *testing.T, total int) (string, sqlkit.DB) {
	t.Helper()
	ctx := testenv.Context(t)
	url := testenv.NewMigratedDatabase(t)
	pool := testenv.Pool(t, url)
	_, err := pool.Exec(ctx, `CREATE TABLE items (id bigint PRIMARY KEY, v text)`)
	require.NoError(t, err)
	_, err = sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "items"})
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO items SELECT g, 'x' FROM generate_series(1, $1::bigint) g`, total)
	require.NoError(t, err)
	return url, pool
}

// waitDrained waits until the default relay has recorded everything as
// delivered.
func waitDrained(t *testing.T, ctx context.Context, db sqlkit.DB) {
	t.Helper()
	testenv.WaitFor(t, ctx, "the relay to deliver the whole backlog", func() bool {
		cur, err := sqlkit.LoadCursor(ctx, db, relay.DefaultName)
		if err != nil {
			return false
		}
		n, _, err := sqlkit.Backlog(ctx, db, cur)
		return err == nil && n == 0
	})
}

// count returns how many messages stream holds, 0 while it does not exist.
func count(ctx context.Context, js jetstream.JetStream, stream string) uint64 {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// TestRelayKilledMidDrain kills a relay process with SIGKILL while it
// drains a backlog into the stream, starts another, and checks that the
// stream holds every event exactly once, in order.
func TestRelayKilledMidDrain(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	const total = 20_000
	url, db := itemsDatabase(t, total)
	cfg := testConfig(t, natsURL())
	js := jetStream(t, natsURL())

	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+url, childStreamEnv+"="+cfg.Stream)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		return cmd
	}

	first := start()
	testenv.WaitFor(t, ctx, "a fifth of the backlog in the stream", func() bool {
		return count(ctx, js, cfg.Stream) >= total/5
	})
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_ = first.Wait()
	atKill := count(ctx, js, cfg.Stream)
	require.Less(t, atKill, uint64(total), "killed before the end of the drain")

	began := time.Now()
	second := start()
	defer func() {
		_ = second.Process.Signal(syscall.SIGTERM)
		_ = second.Wait()
	}()
	waitDrained(t, ctx, db)
	took := time.Since(began)
	t.Logf("SIGKILL mid-drain at %d of %d events; the second relay delivered the rest in %v (%.0f events/s, start-up included)",
		atKill, total, took.Round(time.Millisecond), float64(total-int(atKill))/took.Seconds())

	msgs := readStream(t, ctx, js, cfg.Stream)
	subject := strings.ToLower(cfg.Stream) + ".public.items.cdc_events"
	requireOnceInOrder(t, idsBySubject(msgs), subject, total)
}

// requireOnceInOrder checks that bySubject has only subject, with total
// event ids, each greater than the one before: every event once, in order
// (the outbox's ids, of one transaction, increase).
func requireOnceInOrder(t *testing.T, bySubject map[string][]int64, subject string, total int) {
	t.Helper()
	require.Len(t, bySubject, 1)
	ids := bySubject[subject]
	require.Len(t, ids, total, "every event exactly once")
	for i := 1; i < len(ids); i++ {
		require.Greater(t, ids[i], ids[i-1], "in order, once: at %d", i)
	}
}

// TestDrainThroughput drains a backlog through a relay in this process and
// reports the rate.
func TestDrainThroughput(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	const total = 20_000
	url, db := itemsDatabase(t, total)
	cfg := testConfig(t, natsURL())
	h := newHandler(t, cfg)
	r, err := relay.New(relay.Config{DatabaseURL: url, BatchSize: 500}, h)
	require.NoError(t, err)
	began := time.Now()
	require.NoError(t, r.Start(ctx))
	t.Cleanup(func() { require.NoError(t, r.Close(context.Background())) })
	waitDrained(t, ctx, db)
	took := time.Since(began)
	t.Logf("drained %d events into JetStream in %v: %.0f events/s (batch size 500, MaxPending %d, start-up included)",
		total, took.Round(time.Millisecond), float64(total)/took.Seconds(), h.Config().MaxPending)
	js := jetStream(t, natsURL())
	requireOnceInOrder(t, idsBySubject(readStream(t, ctx, js, cfg.Stream)), strings.ToLower(cfg.Stream)+".public.items.cdc_events", total)
}
