package relay_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

// TestReadStatusWithoutRetainedReadsOnlyTheBacklog: with 3,000 delivered
// events kept in the outbox (one outbox row each) and 2 undelivered,
// ReadStatus counts the kept ones by reading every outbox row, and
// ReadStatusWith SkipRetained, which the metrics call every few seconds,
// reads about the backlog only, with the same figures otherwise. The
// table's read counters tell the two apart, whatever the timing.
func TestReadStatusWithoutRetainedReadsOnlyTheBacklog(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	f.exec(t, `DO $$ BEGIN FOR i IN 1..3000 LOOP INSERT INTO items VALUES (i, 'x'); END LOOP; END $$`)
	c := newCollector()
	r := f.startRelay(t, relay.Config{}, c)
	f.waitExactly(t, ctx, c, 3000)
	require.NoError(t, r.Close(ctx))
	f.exec(t, `INSERT INTO items VALUES (-1, 'y'), (-2, 'y')`)

	conn, err := f.pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	full, fullReads := readStatusCounting(t, ctx, conn.Conn(), relay.StatusOptions{})
	cheap, cheapReads := readStatusCounting(t, ctx, conn.Conn(), relay.StatusOptions{SkipRetained: true})
	t.Logf("outbox rows read: %d with the retained count, %d without", fullReads, cheapReads)

	require.EqualValues(t, 3000, full.Retained)
	require.EqualValues(t, 2, full.Pending)
	require.Zero(t, cheap.Retained)
	full.Retained = 0
	full.OldestPendingAge, cheap.OldestPendingAge = 0, 0
	for i := range full.Tables {
		full.Tables[i].OldestPendingAge = 0
	}
	for i := range cheap.Tables {
		cheap.Tables[i].OldestPendingAge = 0
	}
	require.Equal(t, full, cheap, "the same status but for Retained")
	require.GreaterOrEqual(t, fullReads, int64(3000))
	require.Less(t, cheapReads, int64(100))
}

// readStatusCounting reads the status on conn and returns it with how many
// cdc.outbox rows sequential and index scans read meanwhile.
func readStatusCounting(t *testing.T, ctx context.Context, conn *pgx.Conn, opts relay.StatusOptions) (relay.Status, int64) {
	t.Helper()
	before := testenv.OutboxRowReads(t, ctx, conn)
	st, err := relay.ReadStatusWith(ctx, conn, "", opts)
	require.NoError(t, err)
	return st, testenv.OutboxRowReads(t, ctx, conn) - before
}
