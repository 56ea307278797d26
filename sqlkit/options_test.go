package sqlkit_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// event is what a test expects the relay to read: action, key and, as
// JSON, data and changes ("" for none).
type event struct {
	Action, Key, Data, Changes string
}

func readEvents(t *testing.T, db sqlkit.DB) []event {
	t.Helper()
	var out []event
	for _, r := range readOutbox(t, testenv.Context(t), db) {
		e := event{Action: r.Action}
		for _, f := range []struct {
			v   any
			dst *string
		}{{r.Key, &e.Key}, {r.Data, &e.Data}, {r.Changes, &e.Changes}} {
			if f.v != nil {
				b, err := json.Marshal(f.v)
				require.NoError(t, err)
				*f.dst = string(b)
			}
		}
		out = append(out, e)
	}
	return out
}

func TestCaptureOptions(t *testing.T) {
	t.Parallel()
	const ddl = `CREATE TABLE acct (id int PRIMARY KEY, name text, secret text, score int, seen int)`
	// The same statements for every case: two inserts, updates of each
	// kind, a key change, deletes.
	statements := []string{
		`INSERT INTO acct VALUES (1, 'a', 's1', 5, 0), (2, 'b', 's2', 50, 0)`,
		`UPDATE acct SET score = 20 WHERE id = 1`, // 1 into score > 10
		`UPDATE acct SET score = 1 WHERE id = 2`,  // 2 out of it
		`UPDATE acct SET seen = 9 WHERE id = 1`,   // only seen
		`UPDATE acct SET seen = 10, name = 'A' WHERE id = 1`,
		`UPDATE acct SET secret = 'x' WHERE id = 1`, // only secret
		`DELETE FROM acct WHERE id = 2`,
	}
	row1 := func(fields string) string { return `{"id":1,` + fields + `}` }
	for _, tc := range []struct {
		name string
		opts sqlkit.CaptureOptions
		want []event
	}{
		{"actions", sqlkit.CaptureOptions{Actions: []string{"insert", "DELETE"}}, []event{
			{"insert", "1", row1(`"name":"a","score":5,"secret":"s1","seen":0`), ""},
			{"insert", "2", `{"id":2,"name":"b","score":50,"secret":"s2","seen":0}`, ""},
			{"delete", "2", `{"id":2,"name":"b","score":1,"secret":"s2","seen":0}`, ""},
		}},
		{"exclude", sqlkit.CaptureOptions{Actions: []string{"insert", "update"}, ExcludeColumns: []string{"secret"}}, []event{
			{"insert", "1", row1(`"name":"a","score":5,"seen":0`), ""},
			{"insert", "2", `{"id":2,"name":"b","score":50,"seen":0}`, ""},
			{"update", "1", row1(`"name":"a","score":20,"seen":0`), `[{"field":"score","new":20,"old":5}]`},
			{"update", "2", `{"id":2,"name":"b","score":1,"seen":0}`, `[{"field":"score","new":1,"old":50}]`},
			{"update", "1", row1(`"name":"a","score":20,"seen":9`), `[{"field":"seen","new":9,"old":0}]`},
			{"update", "1", row1(`"name":"A","score":20,"seen":10`), `[{"field":"name","new":"A","old":"a"},{"field":"seen","new":10,"old":9}]`},
		}},
		{"ignore", sqlkit.CaptureOptions{Actions: []string{"update"}, IgnoreColumns: []string{"seen", "secret"}}, []event{
			{"update", "1", row1(`"name":"a","score":20,"secret":"s1","seen":0`), `[{"field":"score","new":20,"old":5}]`},
			{"update", "2", `{"id":2,"name":"b","score":1,"secret":"s2","seen":0}`, `[{"field":"score","new":1,"old":50}]`},
			{"update", "1", row1(`"name":"A","score":20,"secret":"s1","seen":10`), `[{"field":"name","new":"A","old":"a"}]`},
		}},
		{"where", sqlkit.CaptureOptions{Where: "score > 10"}, []event{
			{"insert", "2", `{"id":2,"name":"b","score":50,"secret":"s2","seen":0}`, ""},
			{"insert", "1", row1(`"name":"a","score":20,"secret":"s1","seen":0`), ""},
			{"delete", "2", `{"id":2,"name":"b","score":50,"secret":"s2","seen":0}`, ""},
			{"update", "1", row1(`"name":"a","score":20,"secret":"s1","seen":9`), `[{"field":"seen","new":9,"old":0}]`},
			{"update", "1", row1(`"name":"A","score":20,"secret":"s1","seen":10`), `[{"field":"name","new":"A","old":"a"},{"field":"seen","new":10,"old":9}]`},
			{"update", "1", row1(`"name":"A","score":20,"secret":"x","seen":10`), `[{"field":"secret","new":"x","old":"s1"}]`},
		}},
		{"all together", sqlkit.CaptureOptions{ExcludeColumns: []string{"secret"}, IgnoreColumns: []string{"seen"}, Where: "score > 10 AND name IS NOT NULL"}, []event{
			{"insert", "2", `{"id":2,"name":"b","score":50,"seen":0}`, ""},
			{"insert", "1", row1(`"name":"a","score":20,"seen":0`), ""},
			{"delete", "2", `{"id":2,"name":"b","score":50,"seen":0}`, ""},
			{"update", "1", row1(`"name":"A","score":20,"seen":10`), `[{"field":"name","new":"A","old":"a"}]`},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, pool := setup(t, ddl)
			res, err := sqlkit.EnsureCDCWith(ctx, pool, tc.opts, sqlkit.Table{Name: "acct"})
			require.NoError(t, err)
			require.Equal(t, "installed", res[0].Status)
			for _, s := range statements {
				_, err := pool.Exec(ctx, s)
				require.NoError(t, err, s)
			}
			got := readEvents(t, pool)
			// The relay reads a transaction's events in id order; within
			// one statement, rows moved into or out of the filter may come
			// in another order than the plain updates: compare per
			// statement only where the test has one event per statement.
			require.ElementsMatch(t, tc.want, got)
			require.Len(t, got, len(tc.want))
		})
	}
}

func TestEnsureCDCStatusesAndOptionsShown(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE acct (id int PRIMARY KEY, name text, secret text)`)
	acct := sqlkit.Table{Name: "acct"}
	opts := sqlkit.CaptureOptions{Actions: []string{"update", "insert"}, ExcludeColumns: []string{"secret"}, Where: "name <> 'x'"}
	for _, step := range []struct {
		opts sqlkit.CaptureOptions
		want string
	}{
		{sqlkit.CaptureOptions{}, "installed"},
		{opts, "updated"},
		{opts, "unchanged"},
		{sqlkit.CaptureOptions{}, "updated"}, // a flag left out means its default
		{sqlkit.CaptureOptions{}, "unchanged"},
		{opts, "updated"},
	} {
		res, err := sqlkit.EnsureCDCWith(ctx, pool, step.opts, acct)
		require.NoError(t, err)
		require.Equal(t, step.want, res[0].Status, "%+v", step.opts)
	}
	tables, err := sqlkit.CapturedTables(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, []sqlkit.CapturedTable{{
		Table: sqlkit.Table{Schema: "public", Name: "acct"},
		Options: sqlkit.CaptureOptions{Actions: []string{"insert", "update"}, IgnoreColumns: []string{},
			ExcludeColumns: []string{"secret"}, Where: "(name <> 'x'::text)"},
		Gated: true,
	}}, tables)
	// The same through SQL, with named arguments.
	var status string
	same := `SELECT cdc.ensure_cdc_for('acct', actions => '{insert,update}',
		exclude_columns => '{secret}', row_filter => 'name <> ''x''')`
	require.NoError(t, pool.QueryRow(ctx, same).Scan(&status))
	require.Equal(t, "unchanged", status)
	require.NoError(t, pool.QueryRow(ctx, `SELECT cdc.ensure_cdc_for('acct', ignore_columns => ARRAY['name'])`).Scan(&status))
	require.Equal(t, "updated", status)
	require.NoError(t, pool.QueryRow(ctx, same).Scan(&status))
	require.Equal(t, "updated", status)
	var fromSQL string
	require.NoError(t, pool.QueryRow(ctx, `SELECT format('%s %s %s %s %s', tbl, actions, ignore_columns, exclude_columns, row_filter) FROM cdc.cdc_tables()`).Scan(&fromSQL))
	require.Equal(t, `acct {insert,update} {} {secret} (name <> 'x'::text)`, fromSQL)
}

func TestCaptureOptionsAreValidatedFirst(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE acct (id int PRIMARY KEY, name text); CREATE TABLE other (x int PRIMARY KEY);
		CREATE FUNCTION mine(int) RETURNS boolean IMMUTABLE LANGUAGE sql AS 'SELECT true';`)
	for _, tc := range []struct {
		opts sqlkit.CaptureOptions
		want string
	}{
		{sqlkit.CaptureOptions{Actions: []string{"insert", "upsert"}}, `table public.acct: unknown action 'upsert'`},
		{sqlkit.CaptureOptions{Actions: []string{}}, `table public.acct: no action to capture`},
		{sqlkit.CaptureOptions{IgnoreColumns: []string{"nope"}}, `table public.acct: ignore_columns names column nope, which does not exist`},
		{sqlkit.CaptureOptions{ExcludeColumns: []string{"Name"}}, `table public.acct: exclude_columns names column "Name", which does not exist`},
		{sqlkit.CaptureOptions{ExcludeColumns: []string{"id"}}, `table public.acct: column id is part of the primary key`},
		{sqlkit.CaptureOptions{Where: "name ="}, `table public.acct: the row filter does not parse`},
		{sqlkit.CaptureOptions{Where: "nme = 'a'"}, `table public.acct: the row filter names an unknown column`},
		{sqlkit.CaptureOptions{Where: "id IN (SELECT x FROM other)"}, `table public.acct: the row filter references other tables`},
		{sqlkit.CaptureOptions{Where: "other.x = id"}, `table public.acct: the row filter references other tables`},
		{sqlkit.CaptureOptions{Where: "random() > 0.5"}, `table public.acct: the row filter calls a volatile function`},
		{sqlkit.CaptureOptions{Where: "now() > '2020-01-01'"}, `table public.acct: the row filter calls a volatile function`},
		{sqlkit.CaptureOptions{Where: "mine(id)"}, `table public.acct: invalid row filter: function mine(integer) does not exist`},
		{sqlkit.CaptureOptions{Where: "public.mine(id)"}, `table public.acct: the row filter calls public.mine(integer)`},
		{sqlkit.CaptureOptions{Where: "name"}, `table public.acct: the row filter is not a boolean expression`},
		{sqlkit.CaptureOptions{Where: "true); DROP TABLE other; SELECT (true"}, `table public.acct: the row filter`},
	} {
		_, err := sqlkit.EnsureCDCWith(ctx, pool, tc.opts, sqlkit.Table{Name: "acct"})
		require.ErrorIs(t, err, sqlkit.ErrInvalidOptions, "%+v", tc.opts)
		require.ErrorContains(t, err, tc.want)
	}
	// Two tables at once: all or nothing, so "other", which the filter
	// fits, is not captured either.
	_, err := sqlkit.EnsureCDCWith(ctx, pool, sqlkit.CaptureOptions{Where: "x > 0"}, sqlkit.Table{Name: "other"}, sqlkit.Table{Name: "acct"})
	require.ErrorContains(t, err, `table public.acct: the row filter names an unknown column`)
	tables, err := sqlkit.CapturedTables(ctx, pool)
	require.NoError(t, err)
	require.Empty(t, tables, "nothing installed")
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM other`).Scan(&n), "other still exists")
}

// TestCaptureOptionsChangeUnderWrites flips a table's options back and
// forth while writers insert: every row is captured exactly once, under
// one set of options or the other.
func TestCaptureOptionsChangeUnderWrites(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE acct (id int PRIMARY KEY, secret text)`)
	acct := sqlkit.Table{Name: "acct"}
	_, err := sqlkit.EnsureCDCFor(ctx, pool, acct)
	require.NoError(t, err)
	var (
		next atomic.Int64
		stop atomic.Bool
		wg   sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				id := next.Add(1)
				if _, err := pool.Exec(ctx, `INSERT INTO acct VALUES ($1, 's')`, id); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := range 40 {
		opts := sqlkit.CaptureOptions{}
		if i%2 == 0 {
			opts = sqlkit.CaptureOptions{ExcludeColumns: []string{"secret"}, Where: "id > 0"}
		}
		_, err := sqlkit.EnsureCDCWith(ctx, pool, opts, acct)
		require.NoError(t, err)
	}
	stop.Store(true)
	wg.Wait()

	rows, _ := pool.Query(ctx, `SELECT id FROM acct ORDER BY id`)
	want, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	seen := map[int64]int{}
	for _, e := range readEvents(t, pool) {
		var id int64
		require.NoError(t, json.Unmarshal([]byte(e.Key), &id))
		seen[id]++
	}
	require.Len(t, seen, len(want), "every row captured")
	for id, n := range seen {
		require.Equal(t, 1, n, "row %d captured %d times", id, n)
	}
	t.Logf("%d rows written during 40 option changes", len(want))
}

// TestCaptureOptionsFollowRenames: excluded columns are kept by attribute
// number, so a rename does not let a secret out. A row filter whose column
// was renamed never fails the application's write. With gates, the filter
// follows the rename, as PostgreSQL's publication row filters do (the
// gates keep columns by number, and the DDL event trigger rewrites the
// filter from them); without, its rows are captured unfiltered (with a
// warning) until ensure-cdc is run with a filter that fits.
func TestCaptureOptionsFollowRenames(t *testing.T) {
	t.Parallel()
	all := []event{
		{"insert", "1", `{"id":1,"points":1}`, ""}, {"insert", "2", `{"id":2,"points":20}`, ""},
		{"insert", "3", `{"id":3,"points":5}`, ""}, {"insert", "4", `{"id":4,"points":40}`, ""},
	}
	for _, tc := range []struct {
		name, where, shown string
		want               []event
	}{
		{"gated", "score > 10", "(points > 10)", []event{all[1], all[3]}},
		{"not gated", "score + 0 > 10", "((score + 0) > 10)", all},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, pool := setup(t, `CREATE TABLE acct (id int PRIMARY KEY, secret text, score int)`)
			_, err := sqlkit.EnsureCDCWith(ctx, pool, sqlkit.CaptureOptions{ExcludeColumns: []string{"secret"}, Where: tc.where},
				sqlkit.Table{Name: "acct"})
			require.NoError(t, err)
			_, err = pool.Exec(ctx, `ALTER TABLE acct RENAME COLUMN secret TO hidden; ALTER TABLE acct RENAME COLUMN score TO points`)
			require.NoError(t, err)
			for _, s := range []string{`INSERT INTO acct VALUES (1, 'h', 1)`, `INSERT INTO acct VALUES (2, 'h', 20)`,
				`INSERT INTO acct VALUES (3, 'h', 5), (4, 'h', 40)`} {
				_, err = pool.Exec(ctx, s)
				require.NoError(t, err, "the write succeeds")
			}
			require.Equal(t, tc.want, readEvents(t, pool))
			tables, err := sqlkit.CapturedTables(ctx, pool)
			require.NoError(t, err)
			require.Equal(t, []string{"hidden"}, tables[0].Options.ExcludeColumns)
			require.Equal(t, tc.shown, tables[0].Options.Where)
		})
	}
}

// TestCaptureOptionsWithColumnsNamedLikeTheirSQL: a table whose columns are
// called as the capture's statements call their aliases and variables (x,
// the transition table's alias; pos, j, m, n; sch, rel, keys) is captured
// with all its options like any other: a bare name in those statements
// would have meant the column.
func TestCaptureOptionsWithColumnsNamedLikeTheirSQL(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE odd (id int PRIMARY KEY, x text, pos int, j int, m int, n int, sch text, rel text, keys text)`)
	_, err := sqlkit.EnsureCDCWith(ctx, pool, sqlkit.CaptureOptions{
		Where:          "x <> 'skip' AND n > 0",
		ExcludeColumns: []string{"j"},
		IgnoreColumns:  []string{"pos"},
	}, sqlkit.Table{Name: "odd"})
	require.NoError(t, err)
	for _, q := range []string{
		`INSERT INTO odd VALUES (1, 'a', 1, 1, 1, 1, 's', 'r', 'k'), (2, 'skip', 2, 2, 2, 2, 's', 'r', 'k')`,
		`UPDATE odd SET pos = 10 WHERE id = 1`,        // only an ignored column: nothing
		`UPDATE odd SET m = 5, pos = 11 WHERE id = 1`, // m changed
		`UPDATE odd SET x = 'skip' WHERE id = 1`,      // out of the filter: a delete
		`UPDATE odd SET x = 'b' WHERE id = 2`,         // into it: an insert
		`DELETE FROM odd WHERE id = 2`,
	} {
		_, err := pool.Exec(ctx, q)
		require.NoError(t, err, q)
	}
	row := func(id int, x string, pos, m, n int) string {
		return fmt.Sprintf(`{"id":%d,"keys":"k","m":%d,"n":%d,"pos":%d,"rel":"r","sch":"s","x":%q}`, id, m, n, pos, x)
	}
	require.Equal(t, []event{
		{"insert", "1", row(1, "a", 1, 1, 1), ""},
		{"update", "1", row(1, "a", 11, 5, 1), `[{"field":"m","new":5,"old":1}]`},
		{"delete", "1", row(1, "a", 11, 5, 1), ""},
		{"insert", "2", row(2, "b", 2, 2, 2), ""},
		{"delete", "2", row(2, "b", 2, 2, 2), ""},
	}, readEvents(t, pool))
}
