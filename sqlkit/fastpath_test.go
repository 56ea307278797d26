package sqlkit_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// TestCaptureCachedKeyPath runs every kind of statement in one session, so
// that all but the first take cdc.capture()'s short path (key columns
// cached), including the cases it must hand to the general path: a
// statement with no rows, and one too large for a single chunk. A key
// column whose name holds the cache's separator must survive the cache.
// The same statements through a capture function made for options (a
// filter every row passes, or an excluded column none of them sets) must
// give the same events: its one-chunk statement hands large ones to the
// general one likewise, and a statement without rows returns at once.
func TestCaptureCachedKeyPath(t *testing.T) {
	t.Run("cdc", func(t *testing.T) { testCaptureCachedKeyPath(t, sqlkit.CaptureOptions{}) })
	t.Run("filter", func(t *testing.T) { testCaptureCachedKeyPath(t, sqlkit.CaptureOptions{Where: `"k:1" > -1`}) })
	t.Run("columns", func(t *testing.T) { testCaptureCachedKeyPath(t, sqlkit.CaptureOptions{ExcludeColumns: []string{"w"}}) })
}

func testCaptureCachedKeyPath(t *testing.T, opts sqlkit.CaptureOptions) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE kv ("k:1" int PRIMARY KEY, v text, w text)`)
	_, err := sqlkit.EnsureCDCWith(ctx, pool, opts, sqlkit.Table{Name: "kv"})
	require.NoError(t, err)
	conn := mustConn(t, ctx, pool)
	for _, sql := range []string{
		`INSERT INTO kv VALUES (1, 'a')`,                                 // looks the key up, caches it
		`INSERT INTO kv VALUES (2, 'b'), (3, 'c')`,                       // cached from here on
		`INSERT INTO kv VALUES (2, 'z') ON CONFLICT DO NOTHING`,          // no rows
		`UPDATE kv SET v = 'x' WHERE "k:1" = 0`,                          // no rows
		`UPDATE kv SET v = v || '!' WHERE "k:1" <= 2`,                    // two rows
		`UPDATE kv SET "k:1" = 30 WHERE "k:1" = 3`,                       // key change: delete + insert
		`DELETE FROM kv WHERE "k:1" = 1`,                                 // one row
		`DELETE FROM kv WHERE "k:1" < 0`,                                 // no rows
		`INSERT INTO kv SELECT g, 'n' FROM generate_series(100, 1100) g`, // 1,001 rows: two chunks
		`DELETE FROM kv WHERE "k:1" >= 100`,                              // likewise
	} {
		_, err := conn.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	var got []any
	for _, r := range readOutbox(t, ctx, pool) {
		got = append(got, r.Action, r.Key)
	}
	want := []any{
		"insert", 1.0, "insert", 2.0, "insert", 3.0,
		"update", 1.0, "update", 2.0,
		"delete", 3.0, "insert", 30.0,
		"delete", 1.0,
	}
	for _, action := range []string{"insert", "delete"} {
		for k := 100; k <= 1100; k++ {
			want = append(want, action, float64(k))
		}
	}
	require.Equal(t, want, got)

	var chunks int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM cdc.outbox WHERE table_name = 'kv'`).Scan(&chunks))
	require.Equal(t, 9, chunks, "one outbox row per statement with rows, the 1,001-row ones cut in two")
}
