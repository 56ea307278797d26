package sqlkit_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// captureFunctions returns, for each table's insert trigger, the function
// it calls, and the functions made for options that exist.
func captureFunctions(t *testing.T, ctx context.Context, pool *pgxpool.Pool) (map[string]string, []string) {
	t.Helper()
	rows, err := pool.Query(ctx, `SELECT t.tgrelid::regclass::text, t.tgfoid::regproc::text FROM pg_trigger t
		WHERE t.tgname = 'cdc_capture_insert'`)
	require.NoError(t, err)
	calls := map[string]string{}
	for rows.Next() {
		var tbl, fn string
		require.NoError(t, rows.Scan(&tbl, &fn))
		calls[tbl] = fn
	}
	require.NoError(t, rows.Err())
	var made []string
	require.NoError(t, pool.QueryRow(ctx, `SELECT coalesce(array_agg(p.proname::text ORDER BY p.proname), '{}') FROM pg_proc p
		WHERE p.pronamespace = 'cdc'::regnamespace AND p.proname LIKE 'capture\_\_%'`).Scan(&made))
	return calls, made
}

// TestCaptureFunctionsFollowTheOptions: a table with options is captured
// by a function made for their shape, shared by tables of the same shape,
// replaced when the options change and dropped when no trigger calls it.
func TestCaptureFunctionsFollowTheOptions(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE a (id int PRIMARY KEY, n int);
		CREATE TABLE b (id int PRIMARY KEY, n int);
		CREATE TABLE c (id int PRIMARY KEY, n int)`)
	positive := sqlkit.CaptureOptions{Where: "n > 0"}
	_, err := sqlkit.EnsureCDCWith(ctx, pool, positive, sqlkit.Table{Name: "a"}, sqlkit.Table{Name: "b"})
	require.NoError(t, err)
	_, err = sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "c"})
	require.NoError(t, err)
	calls, made := captureFunctions(t, ctx, pool)
	require.Len(t, made, 1)
	require.Equal(t, map[string]string{"a": "cdc." + made[0], "b": "cdc." + made[0], "c": "cdc.capture"}, calls)

	_, err = pool.Exec(ctx, `INSERT INTO a VALUES (1, 1), (2, -1); INSERT INTO b VALUES (3, -3); INSERT INTO c VALUES (4, -4)`)
	require.NoError(t, err)
	require.Equal(t, []event{
		{"insert", "1", `{"id":1,"n":1}`, ""},
		{"insert", "4", `{"id":4,"n":-4}`, ""},
	}, readEvents(t, pool))

	_, err = sqlkit.EnsureCDCWith(ctx, pool, sqlkit.CaptureOptions{Where: "n < 0"}, sqlkit.Table{Name: "a"})
	require.NoError(t, err)
	calls, made = captureFunctions(t, ctx, pool)
	require.Len(t, made, 2, "a's new filter has a function of its own; b still uses the old one")
	require.NotEqual(t, calls["a"], calls["b"])

	_, err = sqlkit.RemoveCDCFor(ctx, pool, sqlkit.Table{Name: "b"})
	require.NoError(t, err)
	calls, made = captureFunctions(t, ctx, pool)
	require.Equal(t, []string{calls["a"][len("cdc."):]}, made, "the function no trigger calls is gone")

	_, err = sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "a"})
	require.NoError(t, err)
	calls, made = captureFunctions(t, ctx, pool)
	require.Empty(t, made)
	require.Equal(t, "cdc.capture", calls["a"])
}

// TestCaptureFunctionsAreRemadeByMigrate: Migrate remakes the functions
// made for options from its own code, and points triggers that an older
// version installed (cdc.capture() with the options as arguments) at them.
func TestCaptureFunctionsAreRemadeByMigrate(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE a (id int PRIMARY KEY, n int, secret text);
		CREATE TABLE b (id int PRIMARY KEY, n int, secret text)`)
	opts := sqlkit.CaptureOptions{Where: "n > 0", ExcludeColumns: []string{"secret"}}
	_, err := sqlkit.EnsureCDCWith(ctx, pool, opts, sqlkit.Table{Name: "a"}, sqlkit.Table{Name: "b"})
	require.NoError(t, err)
	_, made := captureFunctions(t, ctx, pool)
	require.Len(t, made, 1)
	// An older pgrelay's state: a function of other code, and b's insert
	// trigger on cdc.capture() with its arguments.
	_, err = pool.Exec(ctx, `UPDATE cdc.code_version SET digest = 'other';
		CREATE OR REPLACE FUNCTION cdc.`+made[0]+`() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
		CREATE OR REPLACE TRIGGER cdc_capture_insert AFTER INSERT ON b REFERENCING NEW TABLE AS new_rows
			FOR EACH STATEMENT EXECUTE FUNCTION cdc.capture('', '{3}', '{}', '(n > 0)')`)
	require.NoError(t, err)
	require.NoError(t, sqlkit.Migrate(ctx, pool))
	calls, after := captureFunctions(t, ctx, pool)
	require.Equal(t, made, after)
	require.Equal(t, map[string]string{"a": "cdc." + made[0], "b": "cdc." + made[0]}, calls)

	_, err = pool.Exec(ctx, `INSERT INTO a VALUES (1, 1, 's'), (2, -1, 's'); INSERT INTO b VALUES (3, 3, 's')`)
	require.NoError(t, err)
	require.Equal(t, []event{
		{"insert", "1", `{"id":1,"n":1}`, ""},
		{"insert", "3", `{"id":3,"n":3}`, ""},
	}, readEvents(t, pool))
}

// TestMigrateLeavesATriggerItMayNotReplace: an older version's trigger
// (cdc.capture() with its options as arguments) on a table owned by a role
// the migrating role is not a member of, as when a table owner enabled CDC
// on it. Migrate may not point that trigger at the table's capture
// function; it must neither fail nor lose changes: the trigger stays on
// cdc.capture(), which applies its excluded columns but not its row filter
// (see TestCaptureRunsNoFilterFromTriggerArguments), and the function made
// for it, now unused, is dropped again.
func TestMigrateLeavesATriggerItMayNotReplace(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	migrator, migratorURL := testenv.NewOwnedDatabase(t, "pgrelay_migrator_")
	pool := testenv.Pool(t, migratorURL)
	require.NoError(t, sqlkit.Migrate(ctx, pool))
	owner, ownerURL := testenv.NewRole(t, migratorURL, "pgrelay_tableowner_")
	_, err := pool.Exec(ctx, `GRANT CREATE ON SCHEMA public TO `+pgx.Identifier{owner}.Sanitize())
	require.NoError(t, err)
	ownerPool := testenv.Pool(t, ownerURL)
	_, err = ownerPool.Exec(ctx, `CREATE TABLE b (id int PRIMARY KEY, n int, secret text)`)
	require.NoError(t, err)
	u, err := url.Parse(migratorURL)
	require.NoError(t, err)
	admin := testenv.Pool(t, testenv.WithDatabase(testenv.AdminURL(), u.Path[1:]))
	_, err = admin.Exec(ctx, `CREATE TRIGGER cdc_capture_insert AFTER INSERT ON b REFERENCING NEW TABLE AS new_rows
		FOR EACH STATEMENT EXECUTE FUNCTION cdc.capture('', '{3}', '{}', '(n > 0)')`)
	require.NoError(t, err)

	// Another version's code, so that Migrate installs its own again.
	_, err = pool.Exec(ctx, `UPDATE cdc.code_version SET digest = 'other'`)
	require.NoError(t, err)
	require.NoError(t, sqlkit.Migrate(ctx, pool), "as %s, who does not own b", migrator)
	calls, made := captureFunctions(t, ctx, pool)
	require.Equal(t, map[string]string{"b": "cdc.capture"}, calls)
	require.Empty(t, made)

	_, err = ownerPool.Exec(ctx, `INSERT INTO b VALUES (1, 1, 's'), (2, -1, 's')`)
	require.NoError(t, err)
	require.Equal(t, []event{{"insert", "1", `{"id":1,"n":1}`, ""}, {"insert", "2", `{"id":2,"n":-1}`, ""}}, readEvents(t, pool))
}

// TestCaptureFunctionsFollowDDLInASession: a session that has run a
// table's capture function (and kept its plans) captures columns added
// since, and when a column the filter uses is dropped, captures unfiltered
// instead of failing the write.
func TestCaptureFunctionsFollowDDLInASession(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE a (id int PRIMARY KEY, score int)`)
	// A filter without a gate (arithmetic could fail), whose columns can
	// be dropped (see TestRowFilterGateGuards for one with).
	_, err := sqlkit.EnsureCDCWith(ctx, pool, sqlkit.CaptureOptions{Where: "score + 0 > 10"}, sqlkit.Table{Name: "a"})
	require.NoError(t, err)
	writer, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer writer.Release()
	for _, step := range []struct{ writer, other string }{
		{writer: `INSERT INTO a VALUES (1, 20), (2, 5)`},
		{other: `ALTER TABLE a ADD COLUMN more int DEFAULT 7`},
		{writer: `INSERT INTO a VALUES (3, 30)`},
		{writer: `UPDATE a SET score = 1 WHERE id = 3`},
		{other: `ALTER TABLE a DROP COLUMN score`},
		{writer: `INSERT INTO a VALUES (4)`},
	} {
		if step.writer != "" {
			_, err = writer.Exec(ctx, step.writer)
		} else {
			_, err = pool.Exec(ctx, step.other)
		}
		require.NoError(t, err)
	}
	require.Equal(t, []event{
		{"insert", "1", `{"id":1,"score":20}`, ""},
		{"insert", "3", `{"id":3,"more":7,"score":30}`, ""},
		{"delete", "3", `{"id":3,"more":7,"score":30}`, ""},
		{"insert", "4", `{"id":4,"more":7}`, ""},
	}, readEvents(t, pool))
}

// TestCaptureOptionsNeedTheMigratingRole: a table owner who is not the
// role that migrated may install capture without options, but not with:
// the function made for options would write the outbox with the owner's
// rights, which it lacks, and fail the application's writes. It is
// refused with one line, and nothing is installed.
func TestCaptureOptionsNeedTheMigratingRole(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	dbURL := testenv.NewMigratedDatabase(t)
	migrator := testenv.Pool(t, dbURL)
	role, roleURL := testenv.NewRole(t, dbURL, "pgrelay_tables_")
	_, err := migrator.Exec(ctx, `GRANT USAGE, CREATE ON SCHEMA cdc TO `+pgx.Identifier{role}.Sanitize()+`;
		CREATE TABLE a (id int PRIMARY KEY, n int); CREATE TABLE b (id int PRIMARY KEY, n int);
		ALTER TABLE a OWNER TO `+pgx.Identifier{role}.Sanitize()+`; ALTER TABLE b OWNER TO `+pgx.Identifier{role}.Sanitize())
	require.NoError(t, err)
	owner := testenv.Pool(t, roleURL)

	// Through SQL: sqlkit's Go functions also read cdc's tables first.
	_, err = owner.Exec(ctx, `SELECT cdc.ensure_cdc_for('a', row_filter => 'n > 0')`)
	require.ErrorContains(t, err, "table public.a: capture options need the role that ran relay migrate")
	_, err = owner.Exec(ctx, `SELECT cdc.ensure_cdc_for('b')`)
	require.NoError(t, err)
	_, err = owner.Exec(ctx, `INSERT INTO a VALUES (1, 1); INSERT INTO b VALUES (2, 2)`)
	require.NoError(t, err)
	calls, made := captureFunctions(t, ctx, migrator)
	require.Empty(t, made)
	require.Equal(t, map[string]string{"b": "cdc.capture"}, calls)
	require.Equal(t, []event{{"insert", "2", `{"id":2,"n":2}`, ""}}, readEvents(t, migrator))
}

// TestCaptureFunctionsRefreshLeavesOthersTriggers: when Migrate may not
// replace a trigger an older version installed (a table owner installed
// it, and the role that migrates neither owns the table nor is superuser),
// it still succeeds, and the table stays captured by cdc.capture(),
// unfiltered.
func TestCaptureFunctionsRefreshLeavesOthersTriggers(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	_, migratorURL := testenv.NewOwnedDatabase(t, "pgrelay_owner_")
	u, err := url.Parse(migratorURL)
	require.NoError(t, err)
	ownerRole, ownerURL := testenv.NewRole(t, testenv.WithDatabase(testenv.AdminURL(), u.Path[1:]), "pgrelay_tables_")
	migrator := testenv.Pool(t, migratorURL)
	require.NoError(t, sqlkit.Migrate(ctx, migrator))
	_, err = migrator.Exec(ctx, `GRANT USAGE ON SCHEMA cdc TO `+pgx.Identifier{ownerRole}.Sanitize()+`;
		GRANT CREATE ON SCHEMA public TO `+pgx.Identifier{ownerRole}.Sanitize())
	require.NoError(t, err)

	// An older pgrelay's trigger, installed by the table's owner.
	owner := testenv.Pool(t, ownerURL)
	_, err = owner.Exec(ctx, `CREATE TABLE b (id int PRIMARY KEY, n int);
		CREATE TRIGGER cdc_capture_insert AFTER INSERT ON b REFERENCING NEW TABLE AS new_rows
			FOR EACH STATEMENT EXECUTE FUNCTION cdc.capture('', '{}', '{}', '(n > 0)')`)
	require.NoError(t, err)

	_, err = migrator.Exec(ctx, `UPDATE cdc.code_version SET digest = 'other'`)
	require.NoError(t, err)
	require.NoError(t, sqlkit.Migrate(ctx, migrator))
	calls, made := captureFunctions(t, ctx, migrator)
	require.Equal(t, map[string]string{"b": "cdc.capture"}, calls)
	require.Empty(t, made, "the function no trigger could be pointed at is not kept")

	_, err = owner.Exec(ctx, `INSERT INTO b VALUES (1, 1), (2, -1)`)
	require.NoError(t, err)
	require.Equal(t, []event{{"insert", "1", `{"id":1,"n":1}`, ""}, {"insert", "2", `{"id":2,"n":-1}`, ""}}, readEvents(t, migrator))
}

// TestConcurrentEnsureCDCWithTheSameNewOptions: two ensure-cdc runs that
// make the same new capture function at once (as two deploying hosts
// would) both succeed, one after the other, instead of the second failing
// on the function the first has not committed yet.
func TestConcurrentEnsureCDCWithTheSameNewOptions(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE a (id int PRIMARY KEY, n int); CREATE TABLE b (id int PRIMARY KEY, n int)`)
	opts := sqlkit.CaptureOptions{Where: "n > 0"}
	first, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer first.Rollback(ctx) //nolint:errcheck // no-op after commit
	_, err = sqlkit.EnsureCDCWith(ctx, first, opts, sqlkit.Table{Name: "a"})
	require.NoError(t, err)
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	second := make(chan error, 1)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		_, err := sqlkit.EnsureCDCWith(ctx, conn, opts, sqlkit.Table{Name: "b"})
		second <- err
	}()
	// Commit once the second run waits for this transaction.
	testenv.WaitForLockWait(t, ctx, pool, conn.Conn().PgConn().PID(), ended)
	require.NoError(t, first.Commit(ctx))
	require.NoError(t, <-second)

	calls, made := captureFunctions(t, ctx, pool)
	require.Len(t, made, 1)
	require.Equal(t, map[string]string{"a": "cdc." + made[0], "b": "cdc." + made[0]}, calls)
}

// TestRowFilterOfAColumnNamedLikeAVariable: a filter whose column is named
// like one of the capture function's variables once was (n, sch, keys)
// and was dropped fails, and its rows are captured unfiltered; it does not
// take the variable instead, which had every row rejected.
func TestRowFilterOfAColumnNamedLikeAVariable(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE a (id int PRIMARY KEY, n int, sch text, keys text)`)
	// Without gates (arithmetic), so that the columns can be dropped.
	_, err := sqlkit.EnsureCDCWith(ctx, pool, sqlkit.CaptureOptions{Where: "n + 0 > 0 AND sch IS NOT NULL AND keys IS NOT NULL"},
		sqlkit.Table{Name: "a"})
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `ALTER TABLE a DROP COLUMN n, DROP COLUMN sch, DROP COLUMN keys`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO a VALUES (1)`)
	require.NoError(t, err)
	require.Equal(t, []event{{"insert", "1", `{"id":1}`, ""}}, readEvents(t, pool))
}

// TestCaptureRunsNoFilterFromTriggerArguments: a role that may use schema
// cdc (as one granted cdc.publish) and owns a table can create a trigger
// calling cdc.capture() with any arguments. The capture runs as cdc's
// owner, so a row filter taken from them would run that role's SQL with
// the owner's rights: cdc.capture() never runs one (the rows are captured
// unfiltered), Migrate makes no capture function of one it refuses, and
// checking a filter runs nothing of it, not even a function of constants,
// which planning it would.
func TestCaptureRunsNoFilterFromTriggerArguments(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	dbURL := testenv.NewMigratedDatabase(t)
	admin := testenv.Pool(t, dbURL)
	role, roleURL := testenv.NewRole(t, dbURL, "pgrelay_writer_")
	_, err := admin.Exec(ctx, `GRANT USAGE ON SCHEMA cdc TO `+pgx.Identifier{role}.Sanitize()+`;
		GRANT CREATE ON SCHEMA public TO `+pgx.Identifier{role}.Sanitize())
	require.NoError(t, err)
	writer := testenv.Pool(t, roleURL)
	// The filter is false only for a role that may read pg_authid (the
	// owner of cdc here, a superuser): were it run, the row would be left
	// out, silently.
	_, err = writer.Exec(ctx, `CREATE TABLE w (id int PRIMARY KEY);
		CREATE TRIGGER cdc_capture_insert AFTER INSERT ON w REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
			EXECUTE FUNCTION cdc.capture('', '{}', '{}', '(SELECT count(*) FROM pg_catalog.pg_authid) < 0');
		CREATE FUNCTION evil(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS 'BEGIN RAISE EXCEPTION ''evil ran as %'', current_user; END';
		CREATE TABLE v (id int PRIMARY KEY);
		CREATE TRIGGER cdc_capture_insert AFTER INSERT ON v REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
			EXECUTE FUNCTION cdc.capture('', '{}', '{}', 'public.evil(1) > id');
		CREATE TRIGGER cdc_capture_delete AFTER DELETE ON v REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
			EXECUTE FUNCTION cdc.capture('', '{}', '{}', '(id > 0)')`)
	require.NoError(t, err)
	_, err = writer.Exec(ctx, `INSERT INTO w VALUES (1)`)
	require.NoError(t, err)
	require.Equal(t, []event{{"insert", "1", `{"id":1}`, ""}}, readEvents(t, admin))

	_, err = admin.Exec(ctx, `UPDATE cdc.code_version SET digest = 'other'`)
	require.NoError(t, err)
	require.NoError(t, sqlkit.Migrate(ctx, admin))
	calls, _ := captureFunctions(t, ctx, admin)
	require.Equal(t, map[string]string{"w": "cdc.capture", "v": "cdc.capture"}, calls,
		"each trigger's filter checked, not only the first of a table's")
	var bodies int
	require.NoError(t, admin.QueryRow(ctx, `SELECT count(*) FROM pg_proc
		WHERE pronamespace = 'cdc'::regnamespace AND (prosrc LIKE '%evil%' OR prosrc LIKE '%pg_authid%')`).Scan(&bodies))
	require.Zero(t, bodies, "no capture function of the refused filters")

	_, err = admin.Exec(ctx, `SELECT cdc.check_row_filter('v', 'public.evil(1) > id')`)
	require.ErrorContains(t, err, "the row filter calls public.evil(integer)")
	require.NotContains(t, err.Error(), "evil ran")
}
