package sqlkit_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// gates returns, for each of tbl's capture triggers by action, whether it
// is gated: it has a WHEN clause and its gate trigger exists. A half-gated
// action (one without the other) fails the test.
func gates(t *testing.T, ctx context.Context, db sqlkit.DB, tbl string) map[string]bool {
	t.Helper()
	rows, err := db.Query(ctx, `SELECT substr(c.tgname, 13), c.tgqual IS NOT NULL,
			EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = c.tgrelid AND g.tgname = 'cdc_gate_' || substr(c.tgname, 13))
		FROM pg_trigger c WHERE c.tgrelid = $1::regclass AND c.tgname LIKE 'cdc\_capture\_%'`, tbl)
	require.NoError(t, err)
	out := map[string]bool{}
	for rows.Next() {
		var act string
		var when, gate bool
		require.NoError(t, rows.Scan(&act, &when, &gate))
		require.Equal(t, when, gate, "%s: capture trigger's WHEN and gate trigger of %s", tbl, act)
		out[act] = when
	}
	require.NoError(t, rows.Err())
	return out
}

var (
	allGated = map[string]bool{"insert": true, "update": true, "delete": true, "truncate": false}
	noGates  = map[string]bool{"insert": false, "update": false, "delete": false, "truncate": false}
)

// captureCalls runs stmts in one transaction and returns how many times
// they called a capture function, from PostgreSQL's function statistics
// (which count also what earlier transactions of the session called, until
// they are flushed, never in a transaction: hence before and after).
func captureCalls(t *testing.T, ctx context.Context, pool *pgxpool.Pool, stmts ...string) int64 {
	t.Helper()
	const count = `SELECT coalesce(sum(f.calls), 0) FROM pg_stat_xact_user_functions f
		WHERE f.schemaname = 'cdc' AND (f.funcname = 'capture' OR f.funcname LIKE 'capture\_\_%')`
	var before, after int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL track_functions = 'pl'`); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, count).Scan(&before); err != nil {
			return err
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, count).Scan(&after)
	})
	require.NoError(t, err)
	return after - before
}

// TestRowFilterGates: a row filter that cannot fail gets gates, so that a
// statement whose rows it rejects never calls the capture function; one
// that could fail for some row (arithmetic, functions of columns, LIKE)
// is checked by the capture function alone, where a failure captures the
// rows unfiltered instead of failing the write.
func TestRowFilterGates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		where  string
		gated  bool
		reject string // a row the filter rejects
		pass   string // and one it lets through
	}{
		{"score > 10", true, "(1, 'a', 5, 0, 'x')", "(2, 'a', 50, 0, 'x')"},
		{"score BETWEEN 10 AND 20 AND name IS NOT NULL", true, "(1, NULL, 15, 0, 'x')", "(2, 'a', 15, 0, 'x')"},
		{"amount > 100", true, "(1, 'a', 5, 7.5, 'x')", "(2, 'a', 5, 700, 'x')"},
		{"tag IN ('a', 'b') OR score <> 3", true, "(1, 'a', 3, 0, 'x')", "(2, 'a', 3, 0, 'b')"},
		{"NOT (score IS DISTINCT FROM 4)", true, "(1, 'a', 3, 0, 'x')", "(2, 'a', 4, 0, 'x')"},
		{"score + 1 > 10", false, "(1, 'a', 5, 0, 'x')", "(2, 'a', 50, 0, 'x')"},
		{"lower(name) = 'a'", false, "(1, 'B', 5, 0, 'x')", "(2, 'A', 5, 0, 'x')"},
		{"name LIKE 'a%'", false, "(1, 'b', 5, 0, 'x')", "(2, 'ab', 5, 0, 'x')"},
	} {
		t.Run(tc.where, func(t *testing.T) {
			t.Parallel()
			ctx, pool := setup(t, `CREATE TABLE acct (id int PRIMARY KEY, name text, score int, amount numeric, tag text)`)
			_, err := sqlkit.EnsureCDCWith(ctx, pool, sqlkit.CaptureOptions{Where: tc.where}, sqlkit.Table{Name: "acct"})
			require.NoError(t, err)
			want := noGates
			if tc.gated {
				want = allGated
			}
			require.Equal(t, want, gates(t, ctx, pool, "acct"))
			// Any ALTER TABLE reads a gated filter back (to follow renames):
			// it reads back as it was.
			_, err = pool.Exec(ctx, `ALTER TABLE acct ADD COLUMN extra int`)
			require.NoError(t, err)
			res, err := sqlkit.EnsureCDCWith(ctx, pool, sqlkit.CaptureOptions{Where: tc.where}, sqlkit.Table{Name: "acct"})
			require.NoError(t, err)
			require.Equal(t, "unchanged", res[0].Status)

			calls := captureCalls(t, ctx, pool, `INSERT INTO acct VALUES `+tc.reject)
			if tc.gated {
				require.Zero(t, calls, "a rejected row calls no capture function")
			} else {
				require.EqualValues(t, 1, calls)
			}
			require.EqualValues(t, 1, captureCalls(t, ctx, pool, `INSERT INTO acct VALUES `+tc.pass))
			got := readEvents(t, pool)
			require.Len(t, got, 1)
			require.Equal(t, "2", got[0].Key)
		})
	}
}

// TestRowFilterGateStatements: through gates, every kind of statement is
// captured as the filter says, including a statement that another
// statement on the same table interrupts (a function called in the middle
// of it), statements after a mark in the same transaction, a mark rolled
// back with its savepoint, ON CONFLICT, COPY and MERGE.
func TestRowFilterGateStatements(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE acct (id int PRIMARY KEY, score int);
		CREATE FUNCTION side_insert() RETURNS int LANGUAGE sql AS 'INSERT INTO acct VALUES (3, 30) RETURNING 0'`)
	_, err := sqlkit.EnsureCDCWith(ctx, pool, sqlkit.CaptureOptions{Where: "score > 10"}, sqlkit.Table{Name: "acct"})
	require.NoError(t, err)
	require.Equal(t, allGated, gates(t, ctx, pool, "acct"))

	// Row 1 passes and marks the transaction; row 2's value comes from a
	// function whose own insert is captured first; row 2 is rejected.
	_, err = pool.Exec(ctx, `INSERT INTO acct SELECT v.id, CASE WHEN v.id = 2 THEN side_insert() ELSE v.score END
		FROM (VALUES (1, 20), (2, 0)) v(id, score) ORDER BY v.id`)
	require.NoError(t, err)
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, s := range []string{
			`INSERT INTO acct VALUES (4, 40)`,
			`INSERT INTO acct VALUES (5, 5)`,         // after the mark: the capture function rejects it
			`UPDATE acct SET score = 1 WHERE id = 4`, // out of the filter: a delete
			`UPDATE acct SET score = 2 WHERE id = 5`, // neither
			`SAVEPOINT s`, `INSERT INTO acct VALUES (6, 60)`, `ROLLBACK TO s`,
			`INSERT INTO acct VALUES (7, 7)`,
		} {
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.EqualValues(t, 1, captureCalls(t, ctx, pool, `SAVEPOINT s`, `INSERT INTO acct VALUES (6, 60)`, `ROLLBACK TO s`,
		`INSERT INTO acct VALUES (8, 8)`), "the mark is rolled back with its savepoint: row 6 called it, row 8 not")
	_, err = pool.Exec(ctx, `INSERT INTO acct VALUES (8, 80), (9, 9) ON CONFLICT (id) DO UPDATE SET score = excluded.score`)
	require.NoError(t, err)
	_, err = pool.CopyFrom(ctx, pgx.Identifier{"acct"}, []string{"id", "score"}, pgx.CopyFromRows([][]any{{10, 1}, {11, 11}, {12, 2}}))
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `MERGE INTO acct a USING (VALUES (12, 120), (13, 13)) v(id, score) ON a.id = v.id
		WHEN MATCHED THEN UPDATE SET score = v.score WHEN NOT MATCHED THEN INSERT VALUES (v.id, v.score)`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `DELETE FROM acct WHERE id IN (2, 9, 11)`)
	require.NoError(t, err)

	require.Equal(t, []event{
		{"insert", "3", `{"id":3,"score":30}`, ""},
		{"insert", "1", `{"id":1,"score":20}`, ""},
		{"insert", "4", `{"id":4,"score":40}`, ""},
		{"delete", "4", `{"id":4,"score":40}`, ""},
		{"insert", "8", `{"id":8,"score":80}`, ""},
		{"insert", "11", `{"id":11,"score":11}`, ""},
		{"insert", "12", `{"id":12,"score":120}`, ""},
		{"insert", "13", `{"id":13,"score":13}`, ""},
		{"delete", "11", `{"id":11,"score":11}`, ""},
	}, readEvents(t, pool))
}

// requireRefused asserts that stmt fails with SQLSTATE code and changes
// nothing of tbl's capture.
func requireRefused(t *testing.T, ctx context.Context, pool *pgxpool.Pool, code, stmt string) {
	t.Helper()
	_, err := pool.Exec(ctx, stmt)
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "%s: %v", stmt, err)
	require.Equal(t, code, pgErr.Code, "%s: %s", stmt, pgErr.Message)
	require.Equal(t, allGated, gates(t, ctx, pool, "acct"), stmt)
}

// TestRowFilterGateGuards: as with PostgreSQL's publication row filters,
// a column a gated filter uses can be neither dropped nor changed in type,
// and nothing may drop a gate and leave its capture trigger waiting for
// it, nor give the table an inheritance child, whose rows the gates would
// not see, nor enable or disable a gate otherwise than its capture
// trigger: each is refused with one line, and capture goes on. Once the
// filter no longer has the column, it can go.
func TestRowFilterGateGuards(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE acct (id int PRIMARY KEY, score int, note text)`)
	acct := sqlkit.Table{Name: "acct"}
	_, err := sqlkit.EnsureCDCWith(ctx, pool, sqlkit.CaptureOptions{Where: "score > 10"}, acct)
	require.NoError(t, err)

	requireRefused(t, ctx, pool, "2BP01", `ALTER TABLE acct DROP COLUMN score`)
	requireRefused(t, ctx, pool, "0A000", `ALTER TABLE acct ALTER COLUMN score TYPE bigint`)
	requireRefused(t, ctx, pool, "PR004", `ALTER TABLE acct DROP COLUMN score CASCADE`)
	requireRefused(t, ctx, pool, "PR004", `DROP TRIGGER cdc_gate_update ON acct`)
	requireRefused(t, ctx, pool, "PR004", `CREATE TABLE acct_child () INHERITS (acct)`)
	requireRefused(t, ctx, pool, "PR004", `CREATE TABLE acct_child (id int NOT NULL, score int, note text); ALTER TABLE acct_child INHERIT acct`)
	requireRefused(t, ctx, pool, "PR004", `ALTER TABLE acct DISABLE TRIGGER cdc_gate_insert`)
	requireRefused(t, ctx, pool, "PR004", `ALTER TABLE acct ENABLE ALWAYS TRIGGER cdc_capture_delete`)
	_, err = pool.Exec(ctx, `ALTER TABLE acct ENABLE ALWAYS TRIGGER cdc_capture_delete, ENABLE ALWAYS TRIGGER cdc_gate_delete`)
	require.NoError(t, err, "a gate enabled as its capture trigger")
	_, err = pool.Exec(ctx, `CREATE TABLE other (id int); ALTER TABLE acct DROP COLUMN note; INSERT INTO acct VALUES (1, 5), (2, 50)`)
	require.NoError(t, err, "other DDL is not refused")
	require.Equal(t, []event{{"insert", "2", `{"id":2,"score":50}`, ""}}, readEvents(t, pool))
	res, err := sqlkit.EnsureCDCWith(ctx, pool, sqlkit.CaptureOptions{Where: "score > 10"}, acct)
	require.NoError(t, err)
	require.Equal(t, "unchanged", res[0].Status, "other DDL leaves the filter as it was")

	res, err = sqlkit.EnsureCDCWith(ctx, pool, sqlkit.CaptureOptions{Where: "id > 1"}, acct)
	require.NoError(t, err)
	require.Equal(t, "updated", res[0].Status)
	_, err = pool.Exec(ctx, `ALTER TABLE acct DROP COLUMN score`)
	require.NoError(t, err, "a column the filter no longer uses")
	res, err = sqlkit.EnsureCDCWith(ctx, pool, sqlkit.CaptureOptions{}, acct)
	require.NoError(t, err)
	require.Equal(t, "updated", res[0].Status)
	require.Equal(t, noGates, gates(t, ctx, pool, "acct"))
	_, err = pool.Exec(ctx, `CREATE TABLE acct_child () INHERITS (acct)`)
	require.NoError(t, err, "without a filter, children are the table's own business")

	// A gated table can be dropped, and CDC removed, as any other.
	_, err = pool.Exec(ctx, `CREATE TABLE g1 (id int PRIMARY KEY); CREATE TABLE g2 (id int PRIMARY KEY)`)
	require.NoError(t, err)
	_, err = sqlkit.EnsureCDCWith(ctx, pool, sqlkit.CaptureOptions{Where: "id > 0"}, sqlkit.Table{Name: "g1"}, sqlkit.Table{Name: "g2"})
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `DROP TABLE g1`)
	require.NoError(t, err)
	res, err = sqlkit.RemoveCDCFor(ctx, pool, sqlkit.Table{Name: "g2"})
	require.NoError(t, err)
	require.Equal(t, "removed", res[0].Status)
	var left int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgrelid = 'g2'::regclass`).Scan(&left))
	require.Zero(t, left)
}

// TestRowFilterGatesOnlyWhereSafe: no gates for tables whose rows could
// change without a gate seeing them (a partitioned table, an inheritance
// parent), nor where the guards could not be installed (migrated without
// superuser) or a writer could not call what the WHEN clauses call; there
// the capture function checks the filter, as before.
func TestRowFilterGatesOnlyWhereSafe(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE parted (id int PRIMARY KEY, score int) PARTITION BY RANGE (id);
		CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
		CREATE TABLE parent (id int PRIMARY KEY, score int);
		CREATE TABLE child () INHERITS (parent)`)
	for _, tbl := range []string{"parted", "parent"} {
		_, err := sqlkit.EnsureCDCWith(ctx, pool, sqlkit.CaptureOptions{Where: "score > 10"}, sqlkit.Table{Name: tbl})
		require.NoError(t, err)
		require.Equal(t, noGates, gates(t, ctx, pool, tbl))
	}
	require.Equal(t, noGates, gates(t, ctx, pool, "parted_1"))
	// Nor where a writer might not call what the WHEN clauses call.
	_, err := pool.Exec(ctx, `CREATE TABLE acct (id int PRIMARY KEY, score int);
		REVOKE EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) FROM PUBLIC`)
	require.NoError(t, err)
	_, err = sqlkit.EnsureCDCWith(ctx, pool, sqlkit.CaptureOptions{Where: "score > 10"}, sqlkit.Table{Name: "acct"})
	require.NoError(t, err)
	require.Equal(t, noGates, gates(t, ctx, pool, "acct"))

	_, ownerURL := testenv.NewOwnedDatabase(t, "pgrelay_gates_")
	owned := testenv.Pool(t, ownerURL)
	require.NoError(t, sqlkit.Migrate(ctx, owned))
	_, err = owned.Exec(ctx, `CREATE TABLE acct (id int PRIMARY KEY, score int)`)
	require.NoError(t, err)
	_, err = sqlkit.EnsureCDCWith(ctx, owned, sqlkit.CaptureOptions{Where: "score > 10"}, sqlkit.Table{Name: "acct"})
	require.NoError(t, err)
	require.Equal(t, noGates, gates(t, ctx, owned, "acct"))
	_, err = owned.Exec(ctx, `INSERT INTO acct VALUES (1, 5), (2, 50)`)
	require.NoError(t, err)
	require.Equal(t, []event{{"insert", "2", `{"id":2,"score":50}`, ""}}, readEvents(t, owned))
}

// TestMigrateGatesOlderFilters: a table whose row filter an older version
// installed without gates gets them from Migrate, and ensure-cdc with the
// same options finds nothing to change.
func TestMigrateGatesOlderFilters(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE acct (id int PRIMARY KEY, score int)`)
	acct := sqlkit.Table{Name: "acct"}
	opts := sqlkit.CaptureOptions{Where: "score > 10"}
	_, err := sqlkit.EnsureCDCWith(ctx, pool, opts, acct)
	require.NoError(t, err)
	// As the older version left it: the capture trigger without its WHEN,
	// no gate, and other code installed.
	_, err = pool.Exec(ctx, `DO $$ BEGIN
			EXECUTE (SELECT replace(regexp_replace(pg_get_triggerdef(oid), ' WHEN \(.*\) EXECUTE ', ' EXECUTE '),
			                        'CREATE TRIGGER', 'CREATE OR REPLACE TRIGGER')
			         FROM pg_trigger WHERE tgrelid = 'acct'::regclass AND tgname = 'cdc_capture_insert');
		END $$;
		DROP TRIGGER cdc_gate_insert ON acct;
		UPDATE cdc.code_version SET digest = 'other'`)
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"insert": false, "update": true, "delete": true, "truncate": false}, gates(t, ctx, pool, "acct"))

	require.NoError(t, sqlkit.Migrate(ctx, pool))
	require.Equal(t, allGated, gates(t, ctx, pool, "acct"))
	res, err := sqlkit.EnsureCDCWith(ctx, pool, opts, acct)
	require.NoError(t, err)
	require.Equal(t, "unchanged", res[0].Status)
}

// TestRowFilterFollowsRenamesOnlyWhereItMay: a table owner who may not set
// capture options (not the role that migrated) still renames a column the
// gated filter uses: the rename succeeds, and the filter stays as it was;
// the gate follows the rename, and a statement whose row it let through is
// captured unfiltered (here: as the filter says).
func TestRowFilterFollowsRenamesOnlyWhereItMay(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	dbURL := testenv.NewMigratedDatabase(t)
	migrator := testenv.Pool(t, dbURL)
	role, roleURL := testenv.NewRole(t, dbURL, "pgrelay_renamer_")
	_, err := migrator.Exec(ctx, `CREATE TABLE a (id int PRIMARY KEY, n int);
		ALTER TABLE a OWNER TO `+pgx.Identifier{role}.Sanitize())
	require.NoError(t, err)
	_, err = sqlkit.EnsureCDCWith(ctx, migrator, sqlkit.CaptureOptions{Where: "n > 0"}, sqlkit.Table{Name: "a"})
	require.NoError(t, err)
	require.Equal(t, allGated, gates(t, ctx, migrator, "a"))

	owner := testenv.Pool(t, roleURL)
	_, err = owner.Exec(ctx, `ALTER TABLE a RENAME COLUMN n TO m`)
	require.NoError(t, err, "the rename is not refused")
	tables, err := sqlkit.CapturedTables(ctx, migrator)
	require.NoError(t, err)
	require.Equal(t, "(n > 0)", tables[0].Options.Where)
	_, err = owner.Exec(ctx, `INSERT INTO a VALUES (1, -1); INSERT INTO a VALUES (2, 2)`)
	require.NoError(t, err)
	require.Equal(t, []event{{"insert", "2", `{"id":2,"m":2}`, ""}}, readEvents(t, migrator))
}

// TestRowFilterOnAnEnumFollowsRenames: a filter comparing a column with a
// constant of the application's own enum type is gated (an enum calls
// nobody's functions), and follows the column's rename.
func TestRowFilterOnAnEnumFollowsRenames(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TYPE state AS ENUM ('active', 'gone');
		CREATE TABLE acct (id int PRIMARY KEY, st state)`)
	_, err := sqlkit.EnsureCDCWith(ctx, pool, sqlkit.CaptureOptions{Where: "st = 'active'"}, sqlkit.Table{Name: "acct"})
	require.NoError(t, err)
	require.Equal(t, allGated, gates(t, ctx, pool, "acct"))
	_, err = pool.Exec(ctx, `ALTER TABLE acct RENAME COLUMN st TO status;
		INSERT INTO acct VALUES (1, 'gone'), (2, 'active')`)
	require.NoError(t, err)
	tables, err := sqlkit.CapturedTables(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, "(status = 'active'::public.state)", tables[0].Options.Where)
	require.Equal(t, []event{{"insert", "2", `{"id":2,"status":"active"}`, ""}}, readEvents(t, pool))
}
