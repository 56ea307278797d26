package sqlkit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/sqlkit"
)

func TestMigrateIsIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	pool := testenv.Pool(t, testenv.NewDatabase(t))

	v, err := sqlkit.SchemaVersion(ctx, pool)
	require.NoError(t, err)
	require.Zero(t, v)
	require.ErrorIs(t, sqlkit.CheckSchema(ctx, pool), sqlkit.ErrNotMigrated)

	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = sqlkit.Migrate(ctx, pool) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, sqlkit.Migrate(ctx, pool))
	v, err = sqlkit.SchemaVersion(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, sqlkit.LatestVersion(), v)
	require.NoError(t, sqlkit.CheckSchema(ctx, pool))
}

// TestFunctionsAreReinstalled: the functions are code installed by Migrate,
// with the constants filled in; functions another pgrelay installed make
// CheckSchema ask for a migration, which puts this pgrelay's back.
func TestFunctionsAreReinstalled(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, "")
	var def string
	require.NoError(t, pool.QueryRow(ctx, `SELECT pg_get_functiondef('cdc.capture()'::regprocedure)`).Scan(&def))
	require.Contains(t, def, "pg_notify('"+sqlkit.NotifyChannel+"'")
	require.NotContains(t, def, "{{")

	_, err := pool.Exec(ctx, `UPDATE cdc.code_version SET digest = 'other';
		CREATE OR REPLACE FUNCTION cdc.row_key(d json, cols text[]) RETURNS json LANGUAGE sql AS 'SELECT NULL::json'`)
	require.NoError(t, err)
	require.ErrorIs(t, sqlkit.CheckSchema(ctx, pool), sqlkit.ErrNotMigrated)
	require.NoError(t, sqlkit.Migrate(ctx, pool))
	require.NoError(t, sqlkit.CheckSchema(ctx, pool))
	var key string
	require.NoError(t, pool.QueryRow(ctx, `SELECT cdc.row_key('{"id": 7}', '{id}')::text`).Scan(&key))
	require.Equal(t, "7", key, "this pgrelay's cdc.row_key is back")
}

// TestSchemaFromANewerPgrelayIsRefused: a relay must not misread an outbox
// that a newer pgrelay has changed, nor try to migrate it backwards.
func TestSchemaFromANewerPgrelayIsRefused(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, "")
	_, err := pool.Exec(ctx, `UPDATE cdc.schema_version SET version = version + 1`)
	require.NoError(t, err)
	require.ErrorIs(t, sqlkit.CheckSchema(ctx, pool), sqlkit.ErrSchemaTooNew)
	require.ErrorIs(t, sqlkit.Migrate(ctx, pool), sqlkit.ErrSchemaTooNew)
}

// TestMigrationFromVersion4KeepsPendingEvents applies the migrations up to
// version 4 (one outbox row per event), writes events, then upgrades: the
// events written before and after the upgrade are all read, in order.
func TestMigrationFromVersion4KeepsPendingEvents(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	pool := testenv.Pool(t, testenv.NewDatabase(t))
	require.NoError(t, sqlkit.MigrateTo(ctx, pool, 4))
	_, err := pool.Exec(ctx, `CREATE TABLE items (id int PRIMARY KEY, v text);
		SELECT cdc.ensure_cdc_for('items');
		INSERT INTO items SELECT g, 'old' FROM generate_series(1, 3) g;`)
	require.NoError(t, err)
	require.NoError(t, sqlkit.Migrate(ctx, pool))
	_, err = pool.Exec(ctx, `INSERT INTO items SELECT g, 'new' FROM generate_series(4, 6) g`)
	require.NoError(t, err)

	rows := readOutbox(t, ctx, pool)
	require.Len(t, rows, 6)
	for i, r := range rows {
		require.Equal(t, "insert", r.Action)
		require.EqualValues(t, i+1, r.Key)
		want := map[string]any{"id": float64(i + 1), "v": "old"}
		if i >= 3 {
			want["v"] = "new"
		}
		require.Equal(t, want, r.Data)
	}
}

func setup(t *testing.T, ddl string) (context.Context, *pgxpool.Pool) {
	t.Helper()
	ctx := testenv.Context(t)
	pool := testenv.Pool(t, testenv.NewMigratedDatabase(t))
	if ddl != "" {
		_, err := pool.Exec(ctx, ddl)
		require.NoError(t, err)
	}
	return ctx, pool
}

type outboxRow struct {
	Schema, Table, Action string
	Key, Data, Changes    any
}

func readOutbox(t *testing.T, ctx context.Context, db sqlkit.DB) []outboxRow {
	t.Helper()
	b, err := sqlkit.Fetch(ctx, mustConn(t, ctx, db), sqlkit.Cursor{}, 100000, nil)
	require.NoError(t, err)
	var out []outboxRow
	for _, r := range b.Rows {
		out = append(out, outboxRow{r.Schema, r.Table, r.Action, decode(t, r.Key), decode(t, r.Data), decode(t, r.Changes)})
	}
	return out
}

func mustConn(t *testing.T, ctx context.Context, db sqlkit.DB) *pgx.Conn {
	t.Helper()
	pool := db.(*pgxpool.Pool)
	c, err := pool.Acquire(ctx)
	require.NoError(t, err)
	t.Cleanup(c.Release)
	return c.Conn()
}

func decode(t *testing.T, b []byte) any {
	t.Helper()
	if b == nil {
		return nil
	}
	var v any
	require.NoError(t, json.Unmarshal(b, &v))
	return v
}

func TestCaptureWritesOneRowPerChange(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `
		CREATE TABLE users (id int PRIMARY KEY, name text, score numeric);
		CREATE TABLE pairs (a int, b text, v int, PRIMARY KEY (a, b));`)
	_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "users"}, sqlkit.Table{Schema: "public", Name: "pairs"})
	require.NoError(t, err)

	_, err = pool.Exec(ctx, `
		INSERT INTO users VALUES (1, 'a', 1.10), (2, 'b', 2);
		UPDATE users SET name = 'z' WHERE id = 1;
		UPDATE users SET name = name;
		DELETE FROM users WHERE id = 2;
		INSERT INTO pairs VALUES (1, 'x', 1);
		UPDATE pairs SET v = 2;
		TRUNCATE pairs;`)
	require.NoError(t, err)

	require.Equal(t, []outboxRow{
		{"public", "users", "insert", 1.0, map[string]any{"id": 1.0, "name": "a", "score": 1.1}, nil},
		{"public", "users", "insert", 2.0, map[string]any{"id": 2.0, "name": "b", "score": 2.0}, nil},
		{"public", "users", "update", 1.0, map[string]any{"id": 1.0, "name": "z", "score": 1.1},
			[]any{map[string]any{"field": "name", "old": "a", "new": "z"}}},
		{"public", "users", "delete", 2.0, map[string]any{"id": 2.0, "name": "b", "score": 2.0}, nil},
		{"public", "pairs", "insert", map[string]any{"a": 1.0, "b": "x"}, map[string]any{"a": 1.0, "b": "x", "v": 1.0}, nil},
		{"public", "pairs", "update", map[string]any{"a": 1.0, "b": "x"}, map[string]any{"a": 1.0, "b": "x", "v": 2.0},
			[]any{map[string]any{"field": "v", "old": 1.0, "new": 2.0}}},
		{"public", "pairs", "truncate", nil, nil, nil},
	}, readOutbox(t, ctx, pool))
}

func TestCaptureNotifiesOncePerTransaction(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE items (id int PRIMARY KEY, v text)`)
	_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "items"})
	require.NoError(t, err)

	listener := mustConn(t, ctx, pool)
	_, err = listener.Exec(ctx, "LISTEN "+sqlkit.NotifyChannel)
	require.NoError(t, err)

	// No relay waits: writers do not notify.
	_, err = pool.Exec(ctx, "INSERT INTO items VALUES (100, 'unheard')")
	require.NoError(t, err)
	require.NoError(t, sqlkit.EnterWaiting(ctx, pool))

	var txid uint64
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for i := range 5 {
			if _, err := tx.Exec(ctx, "INSERT INTO items VALUES ($1, repeat('x', 10000))", i); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, "UPDATE items SET v = 'y'")
		if err != nil {
			return err
		}
		return tx.QueryRow(ctx, "SELECT pg_current_xact_id()").Scan(&txid)
	})
	require.NoError(t, err)
	// A second transaction, so that "only one" is observable.
	_, err = pool.Exec(ctx, "DELETE FROM items WHERE id = 0")
	require.NoError(t, err)

	n, err := listener.WaitForNotification(ctx)
	require.NoError(t, err)
	require.Equal(t, sqlkit.NotifyChannel, n.Channel)
	require.Equal(t, jsonNumber(txid), n.Payload, "the payload is the transaction id, never row data")
	n, err = listener.WaitForNotification(ctx)
	require.NoError(t, err)
	require.NotEqual(t, jsonNumber(txid), n.Payload)

	// The relay is busy again: no more notifications. The next one heard
	// is from after it waits again.
	require.NoError(t, sqlkit.LeaveWaiting(ctx, pool))
	_, err = pool.Exec(ctx, "DELETE FROM items WHERE id = 1")
	require.NoError(t, err)
	require.NoError(t, sqlkit.EnterWaiting(ctx, pool))
	var last uint64
	require.NoError(t, pool.QueryRow(ctx, "DELETE FROM items WHERE id = 2 RETURNING pg_current_xact_id()::text::bigint").Scan(&last))
	n, err = listener.WaitForNotification(ctx)
	require.NoError(t, err)
	require.Equal(t, jsonNumber(last), n.Payload)
}

func TestWritersInFlight(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE items (id int PRIMARY KEY)`)
	_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "items"})
	require.NoError(t, err)
	busy, err := sqlkit.WritersInFlight(ctx, pool)
	require.NoError(t, err)
	require.False(t, busy)

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	_, err = tx.Exec(ctx, "INSERT INTO items VALUES (1)")
	require.NoError(t, err)
	busy, err = sqlkit.WritersInFlight(ctx, pool)
	require.NoError(t, err)
	require.True(t, busy, "an open transaction that wrote to the outbox")
	require.NoError(t, tx.Commit(ctx))
	busy, err = sqlkit.WritersInFlight(ctx, pool)
	require.NoError(t, err)
	require.False(t, busy)
}

func jsonNumber(u uint64) string {
	b, _ := json.Marshal(u)
	return string(b)
}

func TestEnsureCDCForRefusesWhatItCannotCapture(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `
		CREATE TABLE ok (id int PRIMARY KEY);
		CREATE TABLE nopk (x int);
		CREATE VIEW v AS SELECT 1 AS x;
		CREATE TABLE parted (id int, k int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
		CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);`)

	tests := []struct {
		name  string
		table sqlkit.Table
		want  error
		msg   string
	}{
		{"missing", sqlkit.Table{Name: "nope"}, sqlkit.ErrTableNotFound, "table nope does not exist"},
		{"injection", sqlkit.Table{Name: "x; DROP TABLE ok"}, sqlkit.ErrTableNotFound, `table "x; DROP TABLE ok" does not exist`},
		{"no primary key", sqlkit.Table{Name: "nopk"}, sqlkit.ErrNoPrimaryKey, "table public.nopk has no primary key"},
		{"view", sqlkit.Table{Name: "v"}, sqlkit.ErrNotCapturable, "public.v is a view"},
		{"partition", sqlkit.Table{Name: "parted_1"}, sqlkit.ErrNotCapturable, "public.parted_1 is a partition of public.parted"},
		{"own table", sqlkit.Table{Schema: "cdc", Name: "outbox"}, sqlkit.ErrNotCapturable, "cdc.outbox belongs to pgrelay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// "ok" comes first: nothing may be left half done.
			_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "ok"}, tt.table)
			require.ErrorIs(t, err, tt.want)
			require.ErrorContains(t, err, tt.msg)
			tables, err := sqlkit.CDCTables(ctx, pool)
			require.NoError(t, err)
			require.Empty(t, tables)
		})
	}

	// The application's writes still work on every refused table.
	_, err := pool.Exec(ctx, `INSERT INTO nopk VALUES (1); INSERT INTO parted VALUES (1, 1); INSERT INTO ok VALUES (1)`)
	require.NoError(t, err)
}

func TestEnsureCDCForIsIdempotentAndRemovable(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `
		CREATE SCHEMA "Odd ""Schema""";
		CREATE TABLE "Odd ""Schema"""."Tab lé" (id int PRIMARY KEY);
		CREATE TABLE parted (id int, k int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
		CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);`)
	odd := sqlkit.Table{Schema: `Odd "Schema"`, Name: "Tab lé"}
	parted := sqlkit.Table{Schema: "public", Name: "parted"}

	res, err := sqlkit.EnsureCDCFor(ctx, pool, odd, parted)
	require.NoError(t, err)
	require.Equal(t, []sqlkit.TableResult{{odd, "installed"}, {parted, "installed"}}, res)
	res, err = sqlkit.EnsureCDCFor(ctx, pool, odd, parted)
	require.NoError(t, err)
	require.Equal(t, []sqlkit.TableResult{{odd, "unchanged"}, {parted, "unchanged"}}, res)

	tables, err := sqlkit.CDCTables(ctx, pool)
	require.NoError(t, err)
	require.ElementsMatch(t, []sqlkit.Table{odd, parted}, tables)

	_, err = pool.Exec(ctx, `INSERT INTO "Odd ""Schema"""."Tab lé" VALUES (7); INSERT INTO parted VALUES (1, 5)`)
	require.NoError(t, err)
	rows := readOutbox(t, ctx, pool)
	require.Len(t, rows, 2)
	require.Equal(t, `Odd "Schema"`, rows[0].Schema)
	require.Equal(t, "Tab lé", rows[0].Table)
	require.Equal(t, "parted", rows[1].Table, "a partition's changes carry the partitioned table's name")

	res, err = sqlkit.RemoveCDCFor(ctx, pool, odd)
	require.NoError(t, err)
	require.Equal(t, "removed", res[0].Status)
	res, err = sqlkit.RemoveCDCFor(ctx, pool, odd)
	require.NoError(t, err)
	require.Equal(t, "unchanged", res[0].Status)
	tables, err = sqlkit.CDCTables(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, []sqlkit.Table{parted}, tables)
}

func TestAllTables(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `
		CREATE SCHEMA app;
		CREATE TABLE a (id int PRIMARY KEY);
		CREATE TABLE app.b (id int PRIMARY KEY);
		CREATE VIEW v AS SELECT 1;
		CREATE MATERIALIZED VIEW mv AS SELECT 1;
		CREATE TABLE parted (id int, k int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
		CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);`)

	tables, err := sqlkit.AllTables(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, []sqlkit.Table{{"public", "a"}, {"public", "parted"}}, tables)

	tables, err = sqlkit.AllTables(ctx, pool, "app", "public", "cdc")
	require.NoError(t, err)
	require.Equal(t, []sqlkit.Table{{"app", "b"}, {"public", "a"}, {"public", "parted"}}, tables)

	// The SQL form covers a whole schema in one statement.
	_, err = pool.Exec(ctx, `SELECT cdc.ensure_cdc_for(t) FROM cdc.all_tables() t`)
	require.NoError(t, err)
	cdcTables, err := sqlkit.CDCTables(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, []sqlkit.Table{{"public", "a"}, {"public", "parted"}}, cdcTables)
}

func TestTableNamesRoundTrip(t *testing.T) {
	tests := []struct {
		in   string
		want sqlkit.Table
		out  string
	}{
		{"users", sqlkit.Table{Name: "users"}, "users"},
		{"Users", sqlkit.Table{Name: "users"}, "users"},
		{"public.users", sqlkit.Table{Schema: "public", Name: "users"}, "public.users"},
		{`"My Schema"."My Table"`, sqlkit.Table{Schema: "My Schema", Name: "My Table"}, `"My Schema"."My Table"`},
		{`"a.b"`, sqlkit.Table{Name: "a.b"}, `"a.b"`},
		{`"say ""hi"""`, sqlkit.Table{Name: `say "hi"`}, `"say ""hi"""`},
		{`"Ünï".café`, sqlkit.Table{Schema: "Ünï", Name: "café"}, `"Ünï"."café"`},
		{`"select"`, sqlkit.Table{Name: "select"}, `"select"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := sqlkit.ParseTable(tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.out, got.String())
		})
	}
	for _, bad := range []string{"", ".", "a.", ".a", "a.b.c", `"unterminated`, `""`, "x; DROP TABLE y", `"a"b`, "a b"} {
		_, err := sqlkit.ParseTable(bad)
		require.Error(t, err, bad)
	}
}

// FuzzParseTable checks that whatever parses prints back to the same table.
func FuzzParseTable(f *testing.F) {
	for _, s := range []string{"users", `"My Schema"."My Table"`, `"a""b".c`, "x; DROP TABLE y", `"ü"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tbl, err := sqlkit.ParseTable(s)
		if err != nil {
			return
		}
		again, err := sqlkit.ParseTable(tbl.String())
		if err != nil {
			t.Fatalf("%q parsed to %#v, whose String %q does not parse: %v", s, tbl, tbl.String(), err)
		}
		if again != tbl {
			t.Fatalf("%q: %#v printed as %q parsed back as %#v", s, tbl, tbl.String(), again)
		}
	})
}

func TestPruneKeepsWhatAnyRelayHasNotDelivered(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE items (id int PRIMARY KEY)`)
	_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "items"})
	require.NoError(t, err)
	count := func() (n int) {
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM cdc.events`).Scan(&n))
		return n
	}
	// Ten statements: ten outbox rows, which is what pruning counts (a
	// statement's rows share one outbox row, a chunk).
	_, err = pool.Exec(ctx, `DO $$ BEGIN FOR i IN 1..10 LOOP INSERT INTO items VALUES (i); END LOOP; END $$`)
	require.NoError(t, err)

	// No relay has recorded a position yet: nothing is deleted.
	n, err := sqlkit.Prune(ctx, pool, 0, 100)
	require.NoError(t, err)
	require.Zero(t, n)

	// One relay has delivered everything, another nothing.
	conn := mustConn(t, ctx, pool)
	b, err := sqlkit.Fetch(ctx, conn, sqlkit.Cursor{}, 100, nil)
	require.NoError(t, err)
	require.NoError(t, sqlkit.SaveCursor(ctx, pool, "fast", sqlkit.Cursor{}.Advance(b)))
	require.NoError(t, sqlkit.SaveCursor(ctx, pool, "slow", sqlkit.Cursor{}))
	n, err = sqlkit.Prune(ctx, pool, 0, 100)
	require.NoError(t, err)
	require.Zero(t, n)

	// Both have: the events go, in batches, but only once old enough.
	require.NoError(t, sqlkit.SaveCursor(ctx, pool, "slow", sqlkit.Cursor{}.Advance(b)))
	n, err = sqlkit.Prune(ctx, pool, time.Hour, 100)
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = sqlkit.Prune(ctx, pool, 0, 4)
	require.NoError(t, err)
	require.EqualValues(t, 4, n)
	require.Equal(t, 6, count())
	n, err = sqlkit.Prune(ctx, pool, 0, 100)
	require.NoError(t, err)
	require.EqualValues(t, 6, n)
	require.Zero(t, count())
}

// TestCaptureKeyCacheFollowsDDL changes a table's primary key under one
// session, which caches the key columns: every event still carries the key
// the table has when the row is written.
func TestCaptureKeyCacheFollowsDDL(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE items (id int PRIMARY KEY, code text NOT NULL)`)
	_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "items"})
	require.NoError(t, err)
	conn := mustConn(t, ctx, pool)
	for _, sql := range []string{
		`INSERT INTO items VALUES (1, 'a')`,
		`ALTER TABLE items RENAME COLUMN id TO ident`,
		`INSERT INTO items VALUES (2, 'b')`,
		`ALTER TABLE items DROP CONSTRAINT items_pkey, ADD PRIMARY KEY (code)`,
		`INSERT INTO items VALUES (3, 'c')`,
	} {
		_, err := conn.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	var keys []any
	for _, r := range readOutbox(t, ctx, pool) {
		keys = append(keys, r.Key)
	}
	require.Equal(t, []any{1.0, 2.0, "c"}, keys)
}

// TestFetchPagesThroughChunks reads chunked statements (a 2,500-row INSERT is
// three outbox rows) and single-row ones in batches of several sizes, some
// of which cut chunks in the middle: every event comes exactly once, in
// order, with its own key, and the same as cdc.events shows it.
func TestFetchPagesThroughChunks(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE "Order Lines" ("Order" int, line int, v text, PRIMARY KEY ("Order", line))`)
	_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "Order Lines"})
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO "Order Lines" SELECT g / 10, g % 10, 'v' || g FROM generate_series(0, 2499) g`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `BEGIN;
		INSERT INTO "Order Lines" VALUES (1000, 1, 'a');
		INSERT INTO "Order Lines" VALUES (1000, 2, 'b');
		DELETE FROM "Order Lines" WHERE "Order" = 0;
		UPDATE "Order Lines" SET v = v || '!' WHERE "Order" BETWEEN 1 AND 100;
		UPDATE "Order Lines" SET v = v WHERE "Order" = 101;
		UPDATE "Order Lines" SET line = line + 100 WHERE "Order" = 102;
		UPDATE "Order Lines" SET v = CASE WHEN line = 0 THEN v ELSE 'x' END WHERE "Order" = 103;
		COMMIT`)
	require.NoError(t, err)
	// Inserts, the delete, 1,000 updated rows (two chunks), 10 unchanged
	// (no event), 10 with a new key (a delete and an insert each), 9 of 10
	// changed.
	const total = 2500 + 2 + 10 + 1000 + 0 + 20 + 9

	type event struct {
		ID                         int64
		Action, Key, Data, Changes string
	}
	var view []event
	rows, err := pool.Query(ctx, `SELECT id, action, key::text, data::text, coalesce(changes::text, 'null')
		FROM cdc.events ORDER BY txid, id`)
	require.NoError(t, err)
	for rows.Next() {
		var e event
		require.NoError(t, rows.Scan(&e.ID, &e.Action, &e.Key, &e.Data, &e.Changes))
		view = append(view, e)
	}
	require.NoError(t, rows.Err())
	require.Len(t, view, total)

	for _, limit := range []int{7, 999, 1000, 1001, 5000} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			conn := mustConn(t, ctx, pool)
			var (
				c    sqlkit.Cursor
				got  []event
				left = int64(total + 1)
			)
			for range total + 1 {
				b, err := sqlkit.Fetch(ctx, conn, c, limit, nil)
				require.NoError(t, err)
				require.LessOrEqual(t, len(b.Rows), limit)
				for _, r := range b.Rows {
					// cdc.events shows keys and data as jsonb: compare decoded.
					changes := "null"
					if r.Changes != nil {
						changes = normalJSON(t, r.Changes)
					}
					got = append(got, event{r.ID, r.Action, normalJSON(t, r.Key), normalJSON(t, r.Data), changes})
				}
				c = c.Advance(b)
				// Updates are counted by row: a key change gives two
				// events, an unchanged row none.
				now, _, err := sqlkit.Backlog(ctx, conn, c)
				require.NoError(t, err)
				require.Less(t, now, left, "the backlog shrinks with every batch")
				left = now
				if !b.Full {
					break
				}
			}
			require.Zero(t, left)
			require.Equal(t, total, len(got), "events read")
			for i := range got {
				require.Equal(t, view[i].ID, got[i].ID)
				require.Equal(t, view[i].Action, got[i].Action, "event %d", got[i].ID)
				require.JSONEq(t, view[i].Key, got[i].Key)
				require.JSONEq(t, view[i].Data, got[i].Data)
				require.JSONEq(t, view[i].Changes, got[i].Changes, "event %d", got[i].ID)
			}
			require.JSONEq(t, `{"Order":0,"line":0}`, got[0].Key)
			require.JSONEq(t, `{"Order":249,"line":9}`, got[2499].Key)
			byAction := map[string]int{}
			for _, e := range got {
				byAction[e.Action]++
			}
			require.Equal(t, map[string]int{"insert": 2500 + 2 + 10, "delete": 10 + 10, "update": 1000 + 9}, byAction)
		})
	}
}

func normalJSON(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(b, &v))
	out, err := json.Marshal(v)
	require.NoError(t, err)
	return string(out)
}
