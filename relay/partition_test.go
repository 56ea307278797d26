package relay_test

import (
	"context"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// insertItems writes items from..to, one transaction.
func (f fixture) insertItems(t *testing.T, from, to int) {
	t.Helper()
	f.exec(t, `INSERT INTO items SELECT g, 'x' FROM generate_series($1::bigint, $2::bigint) g`, from, to)
}

// TestRelayResumesAfterPartition cuts the network between a relay and
// PostgreSQL with a proxy that keeps every socket open: frozen for 4 s and
// then thawed, or black-holed for good (new connections work, the old ones
// stay open and silent, so the server keeps their backends). Either way the
// same relay delivers everything written meanwhile within the takeover
// bound (counted from the thaw, or from the cut), never standing by behind
// a backend of its own: in the end only its current three connections are
// left.
func TestRelayResumesAfterPartition(t *testing.T) {
	t.Parallel()
	for _, blackHole := range []bool{false, true} {
		name := "frozen_4s_then_thawed"
		if blackHole {
			name = "black_holed"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := testenv.Context(t)
			f := newFixture(t)
			proxy, proxyURL := proxied(t, f.url)
			cfg := leaseTestConfig(proxyURL)
			tl := newTally()
			r, err := relay.New(cfg, tl.handler(0))
			require.NoError(t, err)
			require.NoError(t, r.Start(ctx))
			defer func() { require.NoError(t, r.Close(context.Background())) }()

			f.insertItems(t, 1, 30)
			before := outboxIDs(t, ctx, f.pool)
			tl.waitIDs(t, ctx, before)

			from := time.Now()
			if blackHole {
				proxy.BlackHole()
			} else {
				proxy.Freeze()
			}
			f.insertItems(t, 31, 60)
			if !blackHole {
				select {
				case <-time.After(4 * time.Second): // the fault's length
				case <-ctx.Done():
					t.Fatal(ctx.Err())
				}
				proxy.Thaw()
				from = time.Now()
			}
			during := idsAfter(outboxIDs(t, ctx, f.pool), before[len(before)-1])
			f.requireResumed(t, ctx, tl, during, from, map[bool]string{false: "the thaw", true: "the cut"}[blackHole])
		})
	}
}

// TestRelayReplacesKilledBlackHoledRelay black-holes a relay process's
// connections and kills it with SIGKILL: its backends live on, as after a
// node was cut off and its pod rescheduled. A new relay on a direct
// connection takes over once the lease expired, ends those backends, and
// delivers everything within the takeover bound.
func TestRelayReplacesKilledBlackHoledRelay(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	proxy, proxyURL := proxied(t, f.url)
	child := startIDChild(t, proxyURL)
	tl := newTally()
	f.insertItems(t, 1, 100)
	first := outboxIDs(t, ctx, f.pool)
	for len(tl.count) < len(first) { // single reader: no lock needed for len
		select {
		case line, ok := <-child.lines:
			require.True(t, ok, "the relay child exited: %v", child.err)
			tl.add(1, parseID(t, line))
		case <-ctx.Done():
			t.Fatal("timed out waiting for the child's events")
		}
	}

	proxy.BlackHole()
	require.NoError(t, child.cmd.Process.Signal(syscall.SIGKILL))
	killedAt := time.Now()
	for line := range child.lines { // what reached the pipe was delivered
		tl.add(1, parseID(t, line))
	}
	require.Len(t, relayBackends(t, ctx, f.pool), 3, "the killed relay's backends live on behind the black hole")

	f.insertItems(t, 101, 200)
	r, err := relay.New(leaseTestConfig(f.url), tl.handler(2))
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	defer func() { require.NoError(t, r.Close(context.Background())) }()

	rest := idsAfter(outboxIDs(t, ctx, f.pool), first[len(first)-1])
	f.requireResumed(t, ctx, tl, rest, killedAt, "the kill")
}

// requireResumed waits for ids, written after the fault, and requires that
// the first of them arrived within the takeover bound of from; then, once
// the relay has nothing left to deliver, that only one relay's three
// backends are left (the abandoned ones were ended) and at most one batch
// arrived twice.
func (f fixture) requireResumed(t *testing.T, ctx context.Context, tl *tally, ids []int64, from time.Time, after string) {
	t.Helper()
	bound := leaseTestConfig(f.url).TakeoverBound()
	took := tl.waitIDs(t, ctx, ids).at.Sub(from)
	t.Logf("delivery resumed %s after %s (bound %s)", took.Round(time.Millisecond), after, bound)
	require.LessOrEqual(t, took, bound, "delivery resumed within the takeover bound")
	waitBackends(t, ctx, f.pool, 3)
	f.waitDelivered(t, ctx, "")
	require.LessOrEqual(t, tl.duplicates(), leaseBatchSize, "at most one batch delivered twice")
}

// TestRelayStepsDownAfterPartitionHeals: relay A is cut off while it
// records a batch, so that its write is held in the network; relay B takes
// over and delivers; then A's network comes back and the held write reaches
// the server after B moved on. The token fences it off: the cursor never
// goes back, A delivers nothing more and stands by, nothing is lost, and
// only the batch A had not recorded arrives twice. B is the README's
// least-privileged role, A a superuser.
func TestRelayStepsDownAfterPartitionHeals(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	proxyA, urlA := proxied(t, f.url)
	tl := newTally()

	// The cursor's mark, sampled throughout: it must never go back.
	var (
		marksMu sync.Mutex
		marks   []int64
	)
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for sampleCtx.Err() == nil {
			if c, err := sqlkit.LoadCursor(sampleCtx, f.pool, relay.DefaultName); err == nil {
				marksMu.Lock()
				marks = append(marks, c.Mark)
				marksMu.Unlock()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()

	held := make(chan struct{})
	release := make(chan struct{})
	var holdOnce sync.Once
	armed := make(chan struct{})
	hA := &tallyHandler{t: tl, label: 1}
	hA.hold = func() {
		select {
		case <-armed:
			holdOnce.Do(func() { close(held); <-release })
		default:
		}
	}
	a, err := relay.New(leaseTestConfig(urlA), hA)
	require.NoError(t, err)
	require.NoError(t, a.Start(ctx))
	defer func() { _ = a.Close(context.Background()) }()
	f.insertItems(t, 1, 10)
	tl.waitIDs(t, ctx, outboxIDs(t, ctx, f.pool))
	aBackends := relayBackends(t, ctx, f.pool)

	// B runs as the README's least-privileged role: it may not end A's
	// (superuser) backends, so A's held write does reach the server.
	b, err := relay.New(leaseTestConfig(newRelayRole(t, f)), tl.handler(2))
	require.NoError(t, err)
	require.NoError(t, b.Start(ctx))
	defer func() { require.NoError(t, b.Close(context.Background())) }()

	// A takes the next batch, and its record of it is held in the network.
	close(armed)
	f.insertItems(t, 11, 20)
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("relay A never got the batch")
	}
	proxyA.Freeze()
	close(release)

	// B takes over and delivers that batch again, and more.
	f.insertItems(t, 21, 30)
	all := outboxIDs(t, ctx, f.pool)
	tl.waitUntil(t, ctx, "relay B delivers A's unrecorded batch again, and the rest", func() bool {
		for i, id := range all {
			if tl.count[id] == 0 || (i >= 10 && i < 20 && tl.count[id] < 2) {
				return false
			}
		}
		return true
	})
	f.waitDelivered(t, ctx, "")

	// The network comes back: A's held write reaches the server, which
	// runs it and then sees A's old connections end.
	proxyA.Thaw()
	waitGone := time.NewTicker(10 * time.Millisecond)
	defer waitGone.Stop()
	for slices.ContainsFunc(relayBackends(t, ctx, f.pool), func(pid int32) bool { return slices.Contains(aBackends, pid) }) {
		select {
		case <-waitGone.C:
		case <-ctx.Done():
			t.Fatal("relay A's old backends never ended")
		}
	}
	// A reconnects and stands by: both registered, one active.
	waitStandby(t, ctx, f)

	f.insertItems(t, 31, 40)
	all = outboxIDs(t, ctx, f.pool)
	tl.waitIDs(t, ctx, all)
	f.waitDelivered(t, ctx, "")
	stopSampling()
	<-sampled

	tl.mu.Lock()
	for _, id := range all[20:] {
		require.Equal(t, 2, tl.first[id].label, "event %d: only B delivers after the takeover", id)
	}
	tl.mu.Unlock()
	require.LessOrEqual(t, tl.duplicates(), 10, "only the batch A had not recorded arrives twice")
	marksMu.Lock()
	defer marksMu.Unlock()
	require.NotEmpty(t, marks)
	for i := 1; i < len(marks); i++ {
		require.GreaterOrEqual(t, marks[i], marks[i-1], "the cursor went back (sample %d of %d)", i, len(marks))
	}
}

// waitStandby waits until two relays are registered for the default name
// and exactly one of them is active.
func waitStandby(t *testing.T, ctx context.Context, f fixture) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		inst, err := sqlkit.RelayInstances(ctx, f.pool, relay.DefaultName)
		require.NoError(t, err)
		active := 0
		for _, i := range inst {
			if i.Active {
				active++
			}
		}
		if len(inst) == 2 && active == 1 && !inst[1].Active {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("timed out waiting for one active relay and one standby: %+v", inst)
		}
	}
}
