package sqlkit_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// TestCaptureInstalledByANonSuperuser installs pgrelay as a database owner
// without superuser, as on managed PostgreSQL services: migration 4 then
// creates no DDL event trigger and no cdc.ddl_generation, and the capture
// must still work (looking the key up every time) and follow key changes.
func TestCaptureInstalledByANonSuperuser(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	_, ownerURL := testenv.NewOwnedDatabase(t, "pgrelay_owner_")
	pool := testenv.Pool(t, ownerURL)

	require.NoError(t, sqlkit.Migrate(ctx, pool))
	var cached bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT to_regclass('cdc.ddl_generation') IS NOT NULL`).Scan(&cached))
	require.False(t, cached, "without superuser there is no DDL event trigger, hence no key cache")
	// Every statement takes the general path, which the function's own
	// settings then serve.
	var config []string
	require.NoError(t, pool.QueryRow(ctx, `SELECT proconfig FROM pg_proc WHERE oid = 'cdc.capture()'::regprocedure`).Scan(&config))
	require.Equal(t, []string{"TimeZone=UTC", "IntervalStyle=postgres", "bytea_output=hex", "extra_float_digits=3",
		"search_path=pg_catalog, pg_temp"}, config)

	_, err := pool.Exec(ctx, `CREATE TABLE items (id int PRIMARY KEY, code text NOT NULL)`)
	require.NoError(t, err)
	_, err = sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "items"})
	require.NoError(t, err)
	conn := mustConn(t, ctx, pool)
	for _, sql := range []string{
		`INSERT INTO items VALUES (1, 'a')`,
		`UPDATE items SET code = 'b' WHERE id = 1`,
		`DELETE FROM items WHERE id = 1`,
		`ALTER TABLE items RENAME COLUMN id TO ident`,
		`INSERT INTO items VALUES (2, 'b')`,
		`ALTER TABLE items DROP CONSTRAINT items_pkey, ADD PRIMARY KEY (code)`,
		`INSERT INTO items VALUES (3, 'c')`,
		`TRUNCATE items`,
	} {
		_, err := conn.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	var got []any
	for _, r := range readOutbox(t, ctx, pool) {
		got = append(got, r.Action, r.Key)
	}
	require.Equal(t, []any{"insert", 1.0, "update", 1.0, "delete", 1.0, "insert", 2.0, "insert", "c", "truncate", nil}, got)
}
