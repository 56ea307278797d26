package sqlkit_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// TestFetchAfterAnalyzeOfEmptyOutbox: the outbox's statistics say it is
// empty (analysed while a relay kept it so, as autovacuum does), the
// fetches' generic plans are made then, and a backlog follows while a
// transaction stays open, so that every batch probes for its rows. Each
// probe must read that transaction's rows by the primary key: a plan that
// reads the id index and filters on txid reads the whole backlog every
// batch. The table's read counters tell the two apart, whatever the timing.
func TestFetchAfterAnalyzeOfEmptyOutbox(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE notes (id bigserial PRIMARY KEY, v int)`)
	_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "notes"})
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `VACUUM ANALYZE cdc.outbox`)
	require.NoError(t, err)

	conn := mustConn(t, ctx, pool)
	var c sqlkit.Cursor
	// Both fetch queries' generic plans are made on the empty outbox.
	b, err := sqlkit.FetchFull(ctx, conn, c, 100, nil)
	require.NoError(t, err)
	_, _, err = sqlkit.FetchLive(ctx, conn, c, 100)
	require.NoError(t, err)
	c = c.Advance(b)

	open, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer open.Rollback(ctx) //nolint:errcheck
	_, err = open.Exec(ctx, `INSERT INTO notes (v) VALUES (-1)`)
	require.NoError(t, err)
	const backlog = 3000
	_, err = pool.Exec(ctx, `DO $$ BEGIN FOR i IN 1..3000 LOOP INSERT INTO notes (v) VALUES (i); COMMIT; END LOOP; END $$`)
	require.NoError(t, err)

	before := testenv.OutboxRowReads(t, ctx, conn)
	read := 0
	for {
		b, err := sqlkit.Fetch(ctx, conn, c, 100, nil)
		require.NoError(t, err)
		c = c.Advance(b)
		read += len(b.Rows)
		if !b.Full {
			break
		}
	}
	require.Equal(t, backlog, read, "every committed event, the open transaction's pending")
	require.NoError(t, open.Commit(ctx))
	b, err = sqlkit.Fetch(ctx, conn, c, 100, nil)
	require.NoError(t, err)
	require.Len(t, b.Rows, 1, "the transaction held open, once it committed")

	after := testenv.OutboxRowReads(t, ctx, conn)
	t.Logf("the fetches read %d outbox rows", after-before)
	// About one window of rows per batch (30 batches of 100 events) and
	// a few rows per probe; reading the backlog once per batch would be
	// about 45,000.
	require.Less(t, after-before, int64(4*backlog),
		"outbox rows the fetches read (one read of the backlog is %d)", backlog)
}
