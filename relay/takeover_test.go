package relay_test

import (
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/faultproxy"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

// takeoverRounds is how many times the active relay is taken down.
const takeoverRounds = 12

// TestRelayTakeoversUnderLoad runs three relay processes of one name, each
// behind its own proxy, under continuous writes, and round after round
// takes the active one down: killed with SIGKILL, black-holed and then
// killed (its backends live on), each time replaced by a new process; or
// partitioned (the proxy forwards nothing, old connections or new) until
// another has taken over, then healed, when it stands by. A black hole
// alone would not do: the relay reconnects on fresh connections and goes
// on itself (TestRelayResumesAfterPartition). Every committed event is delivered, duplicates stay within
// one batch per takeover, and each takeover, from the fault to the first
// delivery by another relay, is within the takeover bound.
func TestRelayTakeoversUnderLoad(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	tl := newTally()

	type member struct {
		child *mirrorChild
		proxy *faultproxy.Proxy
		label int
	}
	var (
		mu        sync.Mutex
		members   = map[int]*member{} // by process id, as cdc.relay_instance has it
		nextLabel = 1
		badLines  atomic.Int64
	)
	start := func() {
		proxy, url := proxied(t, f.url)
		c := startIDChild(t, url)
		mu.Lock()
		m := &member{child: c, proxy: proxy, label: nextLabel}
		nextLabel++
		members[c.cmd.Process.Pid] = m
		mu.Unlock()
		go func() {
			for line := range c.lines {
				id, err := strconv.ParseInt(string(line), 10, 64)
				if err != nil {
					badLines.Add(1)
					continue
				}
				tl.add(m.label, id)
			}
		}()
	}
	for range 3 {
		start()
	}

	// The writer stops between commits, never by cancelling one: a
	// cancelled INSERT may still commit on the server after the committed
	// set was read.
	var stop atomic.Bool
	defer stop.Store(true)
	writerDone := make(chan error, 1)
	go func() {
		for i := 1; !stop.Load(); i++ {
			if _, err := f.pool.Exec(ctx, `INSERT INTO items VALUES ($1, 'x')`, i); err != nil {
				writerDone <- err
				return
			}
			time.Sleep(3 * time.Millisecond) // a steady stream, not a flood
		}
		writerDone <- nil
	}()

	bound := leaseTestConfig("").TakeoverBound()
	var (
		frozen    *member
		lastFault time.Time
		took      []time.Duration
	)
	for round := range takeoverRounds {
		// The active relay: the lease holder, once it has delivered since
		// the previous fault.
		var active *member
		tick := time.NewTicker(10 * time.Millisecond)
		for active == nil {
			pid := leaseHolderPID(t, ctx, f.pool)
			mu.Lock()
			m := members[pid]
			mu.Unlock()
			tl.mu.Lock()
			if m != nil && m != frozen && tl.deliveredSince(m.label, lastFault) {
				active = m
			}
			tl.mu.Unlock()
			select {
			case <-tick.C:
			case <-ctx.Done():
				t.Fatalf("round %d: no relay became active", round)
			}
		}
		tick.Stop()
		if frozen != nil {
			frozen.proxy.Thaw() // the partition heals; that relay stands by
			frozen = nil
		}

		fault := [...]string{"SIGKILL", "partition", "black hole and SIGKILL"}[round%3]
		lastFault = time.Now()
		switch fault {
		case "partition":
			active.proxy.Freeze()
			frozen = active
		default:
			if fault != "SIGKILL" {
				active.proxy.BlackHole()
			}
			require.NoError(t, active.child.cmd.Process.Signal(syscall.SIGKILL))
			mu.Lock()
			delete(members, active.child.cmd.Process.Pid)
			mu.Unlock()
			start()
		}
		var at time.Time
		tl.waitUntil(t, ctx, "round "+strconv.Itoa(round)+": another relay delivers", func() bool {
			var ok bool
			at, ok = tl.firstFromOther(active.label, lastFault)
			return ok
		})
		took = append(took, at.Sub(lastFault))
		t.Logf("round %d: %s of the active relay; another delivered after %s", round, fault,
			at.Sub(lastFault).Round(time.Millisecond))
	}
	if frozen != nil {
		frozen.proxy.Thaw()
	}
	stop.Store(true)
	require.NoError(t, <-writerDone)

	all := outboxIDs(t, ctx, f.pool)
	tl.waitIDs(t, ctx, all)
	f.waitDelivered(t, ctx, "")
	require.Zero(t, badLines.Load(), "lines the children printed that are not event ids")
	tl.mu.Lock()
	require.Len(t, tl.count, len(all), "the delivered set is the committed set")
	tl.mu.Unlock()
	dups := tl.duplicates()
	t.Logf("%d events, %d takeovers, %d duplicates (at most %d allowed), takeovers took %v (bound %s)",
		len(all), takeoverRounds, dups, takeoverRounds*leaseBatchSize, took, bound)
	require.LessOrEqual(t, dups, takeoverRounds*leaseBatchSize, "duplicates: at most one batch per takeover")
	for i, d := range took {
		require.LessOrEqual(t, d, bound, "takeover %d within the bound", i)
	}
}
