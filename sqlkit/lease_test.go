package sqlkit_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/sqlkit"
)

func connect(t *testing.T, ctx context.Context, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// TestLeaseFencesTheFormerHolder: once a relay took over an expired lease,
// the former holder's writes change nothing (cursor, parked events,
// pruning, renewal) and say so with ErrLeaseLost.
func TestLeaseFencesTheFormerHolder(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	url := testenv.NewMigratedDatabase(t)
	pool := testenv.Pool(t, url)
	a, b := connect(t, ctx, url), connect(t, ctx, url)
	const name, ttl = "fenced", time.Minute
	backend := func(c *pgx.Conn) sqlkit.Instance {
		be, err := sqlkit.BackendOf(ctx, c)
		require.NoError(t, err)
		return sqlkit.Instance{Name: name, Host: "test", PID: 1, Backends: []sqlkit.Backend{be}, Direct: true}
	}
	instA, instB := backend(a), backend(b)
	instA.ID, instB.ID = "a", "b"
	require.NoError(t, sqlkit.Register(ctx, a, instA, ttl))
	require.NoError(t, sqlkit.Register(ctx, b, instB, ttl))

	leaseA, ok, err := sqlkit.AcquireLease(ctx, a, name, "a", ttl, time.Second, sqlkit.Lease{})
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = sqlkit.AcquireLease(ctx, b, name, "b", ttl, time.Second, sqlkit.Lease{})
	require.NoError(t, err)
	require.False(t, ok, "a live, unexpired lease is not taken")
	again, ok, err := sqlkit.AcquireLease(ctx, a, name, "a", ttl, time.Second, leaseA)
	require.NoError(t, err)
	require.True(t, ok, "the holder takes its own lease back, as after a reconnect")
	require.Equal(t, leaseA.Since, again.Since, "held without a break: still active since then")
	require.Greater(t, again.Token, leaseA.Token, "each taking fences off the one before")
	leaseA = again

	// Events to deliver, and the holder records them.
	_, err = pool.Exec(ctx, `CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 5)`)
	require.NoError(t, err)
	_, err = sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "t"})
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO t VALUES (6), (7)`)
	require.NoError(t, err)
	cur, err := sqlkit.LoadCursor(ctx, pool, name)
	require.NoError(t, err)
	batch, err := sqlkit.Fetch(ctx, a, cur, 100, nil)
	require.NoError(t, err)
	require.Len(t, batch.Rows, 2)
	delivered := cur.Advance(batch)
	require.NoError(t, sqlkit.SaveProgress(ctx, a, leaseA, delivered, nil))

	// The lease expires (as if a's renewals stopped) and b takes it.
	_, err = pool.Exec(ctx, `UPDATE cdc.relay_cursor SET lease_expires_at = now() WHERE name = $1`, name)
	require.NoError(t, err)
	st, err := sqlkit.ReadLease(ctx, b, name)
	require.NoError(t, err)
	require.True(t, st.Free)
	require.Equal(t, "a", st.Holder)
	leaseB, ok, err := sqlkit.AcquireLease(ctx, b, name, "b", ttl, time.Second, sqlkit.Lease{})
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "a", leaseB.Previous)

	// a comes back: every write of its is refused and changes nothing.
	parked := []sqlkit.ParkedEvent{{Row: batch.Rows[0], Handler: "h", Error: "refused", Attempts: 3}}
	require.ErrorIs(t, sqlkit.SaveProgress(ctx, a, leaseA, sqlkit.Cursor{}, parked), sqlkit.ErrLeaseLost)
	require.ErrorIs(t, sqlkit.Heartbeat(ctx, a, instA, &leaseA, ttl, "ping"), sqlkit.ErrLeaseLost)
	n, err := sqlkit.PruneAs(ctx, a, leaseA, 0, 100)
	require.NoError(t, err)
	require.Zero(t, n, "the former holder prunes nothing")
	got, err := sqlkit.LoadCursor(ctx, pool, name)
	require.NoError(t, err)
	require.Equal(t, delivered.Mark, got.Mark, "the cursor did not move back")
	failed, err := sqlkit.FailedCount(ctx, pool, name)
	require.NoError(t, err)
	require.Zero(t, failed, "the former holder parks nothing")

	// The new holder's writes work.
	require.NoError(t, sqlkit.Heartbeat(ctx, b, instB, &leaseB, ttl, "ping"))
	require.NoError(t, sqlkit.SaveProgress(ctx, b, leaseB, got, parked))
	failed, err = sqlkit.FailedCount(ctx, pool, name)
	require.NoError(t, err)
	require.EqualValues(t, 1, failed)
	n, err = sqlkit.PruneAs(ctx, b, leaseB, 0, 100)
	require.NoError(t, err)
	require.Positive(t, n, "the holder prunes what it delivered")

	inst, err := sqlkit.RelayInstances(ctx, pool, name)
	require.NoError(t, err)
	require.Len(t, inst, 2)
	require.Equal(t, "b", inst[0].ID)
	require.True(t, inst[0].Active)
	require.False(t, inst[1].Active)

	// b stops: the lease is free at once, and b is no longer listed.
	require.NoError(t, sqlkit.ReleaseLease(ctx, b, "b", leaseB))
	st, err = sqlkit.ReadLease(ctx, a, name)
	require.NoError(t, err)
	require.True(t, st.Free)
	inst, err = sqlkit.RelayInstances(ctx, pool, name)
	require.NoError(t, err)
	require.Len(t, inst, 1)
}

// TestLeaseOfAVanishedHolderIsFreeAtOnce: a holder none of whose backends
// is left (its process died and the server noticed) does not make a
// standby wait for the expiry.
func TestLeaseOfAVanishedHolderIsFreeAtOnce(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	url := testenv.NewMigratedDatabase(t)
	gone := connect(t, ctx, url)
	standby := connect(t, ctx, url)
	be, err := sqlkit.BackendOf(ctx, gone)
	require.NoError(t, err)
	const name = "vanished"
	inst := sqlkit.Instance{Name: name, ID: "gone", Host: "test", PID: 1, Backends: []sqlkit.Backend{be}, Direct: true}
	require.NoError(t, sqlkit.Register(ctx, gone, inst, time.Hour))
	_, ok, err := sqlkit.AcquireLease(ctx, gone, name, "gone", time.Hour, time.Second, sqlkit.Lease{})
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = sqlkit.AcquireLease(ctx, standby, name, "standby", time.Hour, time.Second, sqlkit.Lease{})
	require.NoError(t, err)
	require.False(t, ok, "held for an hour by a live relay")

	n, err := sqlkit.TerminateBackends(ctx, standby, []sqlkit.Backend{be})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = sqlkit.TerminateBackends(ctx, standby, []sqlkit.Backend{{PID: be.PID, Started: be.Started.Add(time.Second)}})
	require.NoError(t, err)
	require.Zero(t, n, "a pid with another start time is another backend: left alone")

	// Once the server has removed the backend, the lease is free.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		_, ok, err = sqlkit.AcquireLease(ctx, standby, name, "standby", time.Hour, time.Second, sqlkit.Lease{})
		require.NoError(t, err)
		if ok {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("the lease of a holder with no backend left was never free")
		}
	}
}

// TestSetupSessionTellsTheServerToDropVanishedClients: the server-side
// timeouts follow the relay's Timeout.
func TestSetupSessionTellsTheServerToDropVanishedClients(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	c := connect(t, ctx, testenv.NewMigratedDatabase(t))
	require.NoError(t, sqlkit.SetupSession(ctx, c, 2500*time.Millisecond))
	for setting, want := range map[string]string{
		"idle_in_transaction_session_timeout": "2500ms",
		"tcp_user_timeout":                    "2500", // milliseconds, shown without a unit
		"tcp_keepalives_idle":                 "3",    // seconds, rounded up
		"tcp_keepalives_interval":             "1",
		"tcp_keepalives_count":                "3",
	} {
		var got string
		require.NoError(t, c.QueryRow(ctx, `SELECT current_setting($1)`, setting).Scan(&got))
		require.Equal(t, want, got, setting)
	}
}
