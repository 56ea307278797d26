package sqlkit_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// TestChangedNeverMissesACommit: after a read, Changed says yes whenever a
// read would find something that one did not: a transaction that was in
// progress during the read commits, whether PostgreSQL listed it in the
// snapshot or not (it took its txid after the snapshot's xmax), or a new
// one commits. (It may say yes with nothing new: any write in the cluster
// moves xmax; that costs a read, never an event.)
func TestChangedNeverMissesACommit(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	url := testenv.NewMigratedDatabase(t)
	pool := testenv.Pool(t, url)
	_, err := pool.Exec(ctx, `CREATE TABLE t (id int PRIMARY KEY)`)
	require.NoError(t, err)
	_, err = sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "t"})
	require.NoError(t, err)
	relayConn := connect(t, ctx, url)

	read := func(c sqlkit.Cursor) (sqlkit.Cursor, sqlkit.Batch) {
		b, err := sqlkit.Fetch(ctx, relayConn, c, 100, nil)
		require.NoError(t, err)
		return c.Advance(b), b
	}
	changed := func(b sqlkit.Batch) bool {
		yes, err := sqlkit.Changed(ctx, relayConn, b.Snapshot)
		require.NoError(t, err)
		return yes
	}

	for _, tc := range []struct {
		name string
		// open starts the writer's transaction before the read, or not;
		// listed: a later transaction commits before the read, so that
		// the writer's txid is below the snapshot's xmax and in its xip.
		open, listed bool
	}{
		{"in progress during the read, above xmax", true, false},
		{"in progress during the read, in xip", true, true},
		{"begun after the read", false, false},
	} {
		w := connect(t, ctx, url)
		cur, _ := read(sqlkit.Cursor{})
		tx, err := w.Begin(ctx)
		require.NoError(t, err)
		if tc.open {
			_, err = tx.Exec(ctx, `INSERT INTO t SELECT coalesce(max(id), 0) + 1 FROM t`)
			require.NoError(t, err)
		}
		if tc.listed {
			_, err = pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS other (); INSERT INTO other DEFAULT VALUES`)
			require.NoError(t, err)
		}
		cur, b := read(cur)
		require.Empty(t, b.Rows, tc.name)
		if tc.listed {
			require.NotEmpty(t, b.Snapshot.Xip, tc.name)
		}
		if !tc.open {
			_, err = tx.Exec(ctx, `INSERT INTO t SELECT coalesce(max(id), 0) + 1 FROM t`)
			require.NoError(t, err)
		}
		require.NoError(t, tx.Commit(ctx))
		require.True(t, changed(b), "%s: a commit after the read is announced", tc.name)
		_, b2 := read(cur)
		require.Len(t, b2.Rows, 1, tc.name)
	}
}
