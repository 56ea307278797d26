package sqlkit_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// TestFetchAfterAnalyzeOfEmptyOutbox: the outbox's statistics say it is
// empty (analysed while a relay kept it so, as autovacuum does), the
// fetch's generic plan is made then, and a backlog follows while a
// transaction stays open, so that every batch probes for its rows. Each
// probe must read that transaction's rows by the primary key: a plan that
// reads the id index and filters on txid reads the whole backlog every
// batch. The table's read counters tell the two apart, whatever the timing.
func TestFetchAfterAnalyzeOfEmptyOutbox(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE notes (id bigserial PRIMARY KEY, v int)`)
	var version int
	require.NoError(t, pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version))
	if version < 150000 {
		t.Skip("reading a backend's table counters at once needs PostgreSQL 15 (pg_stat_force_next_flush)")
	}
	_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "notes"})
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `VACUUM ANALYZE cdc.outbox`)
	require.NoError(t, err)

	conn := mustConn(t, ctx, pool)
	var c sqlkit.Cursor
	b, err := sqlkit.Fetch(ctx, conn, c, 100, nil) // the generic plan is made on the empty outbox
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

	before := outboxRowReads(t, ctx, conn, pool)
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

	after := outboxRowReads(t, ctx, conn, pool)
	t.Logf("the fetches read %d outbox rows", after-before)
	// About one window of rows per batch (30 batches of 100 events) and
	// a few rows per probe; reading the backlog once per batch would be
	// about 45,000.
	require.Less(t, after-before, int64(4*backlog),
		"outbox rows the fetches read (one read of the backlog is %d)", backlog)
}

// outboxRowReads flushes conn's statistics and returns how many rows of
// cdc.outbox sequential and index scans have read.
func outboxRowReads(t *testing.T, ctx context.Context, conn *pgx.Conn, pool sqlkit.DB) int64 {
	t.Helper()
	_, err := conn.Exec(ctx, `SELECT pg_stat_force_next_flush()`)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `SELECT 1`) // the flush happens when a statement is done
	require.NoError(t, err)
	var n int64
	require.NoError(t, pool.QueryRow(ctx, `
		SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
		FROM pg_stat_user_tables WHERE schemaname = 'cdc' AND relname = 'outbox'`).Scan(&n))
	return n
}
