package sqlkit_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// TestMigrationFromVersion5KeepsCursor upgrades a schema of version 5 whose
// relay had delivered part of the outbox, with the cursor of that version
// (a txid watermark, and pending transactions delivered up to an event id,
// one of them inside a chunk). Exactly the undelivered events are read
// afterwards, each once, in commit order: among them a transaction that took
// its txid after a delivered one but wrote its rows before it, and one that
// waited for another's row lock after taking the smaller txid.
func TestMigrationFromVersion5KeepsCursor(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	pool := testenv.Pool(t, testenv.NewDatabase(t))
	require.NoError(t, sqlkit.MigrateTo(ctx, pool, 5))
	_, err := pool.Exec(ctx, `CREATE TABLE items (id int PRIMARY KEY, v text);
		SELECT cdc.ensure_cdc_for('items');`)
	require.NoError(t, err)
	exec := func(tx pgx.Tx, sql string, args ...any) {
		t.Helper()
		_, err := tx.Exec(ctx, sql, args...)
		require.NoError(t, err)
	}
	begin := func() pgx.Tx {
		t.Helper()
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		t.Cleanup(func() { _ = tx.Rollback(ctx) })
		exec(tx, `SELECT pg_current_xact_id()`)
		return tx
	}

	// Delivered by the old relay: of a chunk of 1,500 rows (two outbox
	// rows, event ids 1..1000 and 1025..1524), the events up to 1200;
	// "early", whose txid is below the watermark; of "partial", the first
	// event.
	chunked, partial, early := begin(), begin(), begin()
	late := begin() // txid at or above the watermark, rows before early's
	exec(chunked, `INSERT INTO items SELECT g, 'chunk' FROM generate_series(1, 1500) g`)
	require.NoError(t, chunked.Commit(ctx))
	exec(late, `INSERT INTO items VALUES (2001, 'late')`)
	exec(early, `INSERT INTO items VALUES (2002, 'early')`)
	require.NoError(t, early.Commit(ctx))
	require.NoError(t, late.Commit(ctx))
	exec(partial, `INSERT INTO items VALUES (2003, 'partial')`)
	exec(partial, `INSERT INTO items VALUES (2004, 'partial')`)
	require.NoError(t, partial.Commit(ctx))

	// Undelivered: a row-lock inversion, T2 taking its txid before T1.
	t2 := begin()
	t1 := begin()
	exec(t1, `UPDATE items SET v = 't1' WHERE id = 2002`)
	waited, ended := make(chan error, 1), make(chan struct{})
	go func() {
		_, err := t2.Exec(ctx, `UPDATE items SET v = 't2' WHERE id = 2002`)
		waited <- err
		close(ended)
	}()
	testenv.WaitForLockWait(t, ctx, pool, t2.Conn().PgConn().PID(), ended)
	require.NoError(t, t1.Commit(ctx))
	require.NoError(t, <-waited)
	require.NoError(t, t2.Commit(ctx))

	var txids struct{ chunked, late, partial, t1, t2 uint64 }
	var firstPartial, chunkCut int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT
		(SELECT txid FROM cdc.outbox WHERE rows::text LIKE '%chunk%' LIMIT 1),
		(SELECT txid FROM cdc.events WHERE data->>'v' = 'late'),
		(SELECT txid FROM cdc.events WHERE key = '2003'),
		(SELECT txid FROM cdc.events WHERE data->>'v' = 't1'),
		(SELECT txid FROM cdc.events WHERE data->>'v' = 't2'),
		(SELECT id FROM cdc.events WHERE key = '2003'),
		(SELECT min(id) FROM cdc.events WHERE data->>'v' = 'chunk') + 1199`).
		Scan(&txids.chunked, &txids.late, &txids.partial, &txids.t1, &txids.t2, &firstPartial, &chunkCut))
	require.Less(t, txids.t2, txids.t1, "the inversion happened")

	// The cursor an old relay saved: everything below late's txid is
	// delivered, but for the pending chunk and partial transactions.
	_, err = pool.Exec(ctx, `INSERT INTO cdc.relay_cursor (name, next_txid, pending_txids, pending_after_event)
		VALUES ('old', $1, $2, $3)`,
		txids.late, []uint64{txids.chunked, txids.partial}, []int64{chunkCut, firstPartial})
	require.NoError(t, err)
	require.NoError(t, sqlkit.Migrate(ctx, pool))

	c, err := sqlkit.LoadCursor(ctx, pool, "old")
	require.NoError(t, err)
	conn := mustConn(t, ctx, pool)
	var got []sqlkit.Row
	for {
		b, err := sqlkit.Fetch(ctx, conn, c, 100, nil)
		require.NoError(t, err)
		got = append(got, b.Rows...)
		c = c.Advance(b)
		if !b.Full {
			break
		}
	}
	var ids []int64
	var order []string
	for _, r := range got {
		ids = append(ids, r.ID)
		var row struct {
			ID int
			V  string
		}
		require.NoError(t, json.Unmarshal(r.Data, &row))
		if row.V != "chunk" {
			order = append(order, fmt.Sprintf("%d=%s", row.ID, row.V))
		}
	}
	rows, err := pool.Query(ctx, `SELECT id FROM cdc.events
		WHERE (txid = $1 AND id > $2) OR txid = $3 AND id > $4 OR txid >= $5 ORDER BY id`,
		txids.chunked, chunkCut, txids.partial, firstPartial, txids.late)
	require.NoError(t, err)
	want, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	require.Equal(t, want, sorted, "exactly the undelivered events, each once")
	require.Len(t, got, 324+1+1+2, "the chunk's last 324, partial's second, late, t1 and t2")
	require.Equal(t, []string{"2004=partial", "2001=late", "2002=t1", "2002=t2"}, order,
		"partial transactions first, then in commit order")
}
