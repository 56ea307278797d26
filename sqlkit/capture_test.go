package sqlkit_test

// How column values come out in the outbox's JSON (key, data and the "old"
// and "new" of changes). Rows are stored as to_json(row), in chunks, so
// PostgreSQL's own JSON conversion decides, under settings cdc.capture()
// pins (TimeZone UTC, IntervalStyle postgres, bytea_output hex,
// extra_float_digits 3) whatever the writer's session says. The relay
// removes insignificant whitespace when it publishes, and compares old and
// new values of an update as this text: a column counts as changed when its
// JSON differs. TestCaptureColumnTypeMapping checks every line of this table
// against a real server.
//
//	SQL type               JSON                                   example
//	---------------------  -------------------------------------  ------------------------------------
//	smallint/int/bigint    number, exact (beyond 2^53 too)        9007199254740993
//	numeric                number, every digit and the scale      12345678901234567890.123456789, 1.5000
//	numeric NaN/±Infinity  string                                 "NaN", "Infinity"
//	real, float8           number, shortest exact                 0.1, -0
//	float8 NaN/±Infinity   string                                 "NaN", "Infinity", "-Infinity"
//	boolean                true / false                           true
//	text, varchar          string, JSON escapes                   "tab\t \"q\" \\ é"
//	enum                   string: the label                      "it's \"ok\""
//	uuid                   string, lower case                     "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
//	bytea                  string, "\x" + hex                     "\\xdeadbeef00"
//	date                   string, ISO 8601                       "2024-01-02"
//	timestamp              string, ISO 8601, no offset            "2024-02-29T12:34:56.789012"
//	timestamptz            string, ISO 8601, in UTC               "2024-02-29T11:34:56.789012+00:00"
//	timestamptz infinity   string                                 "infinity"
//	interval               string, IntervalStyle postgres         "1 year 2 mons 3 days 04:05:06.5"
//	int[], text[]          array, NULL elements null              [1,null,3]
//	int[][]                nested arrays                          [[1,2],[3,4]]
//	array with bounds      array; the lower bound is lost         '[2:3]={7,8}' -> [7,8]
//	composite              object                                 {"x":1,"y":"a b"}
//	json                   the value as written, duplicate keys   {"b":1, "a":[1.50, 2], "b":2}
//	                       too
//	jsonb                  the value itself                       {"n": 12345678901234567890.5}
//	jsonb 'null', NULL     null (the two cannot be told apart)    null
//
// TestCaptureJSONIgnoresWriterSession checks that the writer's settings
// change none of it.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// rawOutbox returns the outbox rows as stored, JSON bytes untouched. Unlike
// readOutbox it gives its connection back at once, so a test can call it
// after every step.
func rawOutbox(t *testing.T, ctx context.Context, pool *pgxpool.Pool) []sqlkit.Row {
	t.Helper()
	var rows []sqlkit.Row
	require.NoError(t, pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		b, err := sqlkit.Fetch(ctx, c.Conn(), sqlkit.Cursor{}, 100000, nil)
		rows = b.Rows
		return err
	}))
	return rows
}

// outboxNow is readOutbox for tests that read the outbox many times.
func outboxNow(t *testing.T, ctx context.Context, pool *pgxpool.Pool) []outboxRow {
	t.Helper()
	var out []outboxRow
	for _, r := range rawOutbox(t, ctx, pool) {
		out = append(out, outboxRow{r.Schema, r.Table, r.Action, decode(t, r.Key), decode(t, r.Data), decode(t, r.Changes)})
	}
	return out
}

// decodeExact decodes JSON keeping numbers as their exact text.
func decodeExact(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	require.NoError(t, d.Decode(&v))
	require.False(t, d.More(), "trailing data after the JSON value")
	return v
}

// withServerDefaults runs sql in a transaction whose session settings are
// PostgreSQL's defaults, whatever the server or pool was configured with.
func withServerDefaults(t *testing.T, ctx context.Context, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL TimeZone = 'UTC'; SET LOCAL IntervalStyle = 'postgres';
			SET LOCAL bytea_output = 'hex'; SET LOCAL extra_float_digits = 1; SET LOCAL DateStyle = 'ISO, MDY'`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, sql, args...)
		return err
	}))
}

func TestCaptureColumnTypeMapping(t *testing.T) {
	t.Parallel()
	type n = json.Number
	tests := []struct {
		col, typ, lit string
		raw           string // the exact JSON text in data
		want          any    // decoded with UseNumber
	}{
		{"num", "numeric", "12345678901234567890.123456789", "12345678901234567890.123456789", n("12345678901234567890.123456789")},
		{"num_scale", "numeric(10,4)", "1.5", "1.5000", n("1.5000")},
		{"num_nan", "numeric", "'NaN'", `"NaN"`, "NaN"},
		{"num_inf", "numeric", "'Infinity'", `"Infinity"`, "Infinity"},
		{"big", "bigint", "9007199254740993", "9007199254740993", n("9007199254740993")},
		{"big_min", "bigint", "'-9223372036854775808'", "-9223372036854775808", n("-9223372036854775808")},
		{"f8", "float8", "0.1", "0.1", n("0.1")},
		{"f8_negzero", "float8", "'-0'", "-0", n("-0")},
		{"f8_nan", "float8", "'NaN'", `"NaN"`, "NaN"},
		{"f8_inf", "float8", "'Infinity'", `"Infinity"`, "Infinity"},
		{"f8_neginf", "float8", "'-Infinity'", `"-Infinity"`, "-Infinity"},
		{"f4", "real", "1.1", "1.1", n("1.1")},
		{"flag", "boolean", "true", "true", true},
		{"txt", "text", `E'tab\t "q" \\ é'`, `"tab\t \"q\" \\ é"`, "tab\t \"q\" \\ é"},
		{"mood", "mood", `'it''s "ok"'`, `"it's \"ok\""`, `it's "ok"`},
		{"id2", "uuid", "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{"bin", "bytea", `'\xdeadbeef00'`, `"\\xdeadbeef00"`, `\xdeadbeef00`},
		{"day", "date", "'2024-01-02'", `"2024-01-02"`, "2024-01-02"},
		{"ts", "timestamp", "'2024-02-29 12:34:56.789012'", `"2024-02-29T12:34:56.789012"`, "2024-02-29T12:34:56.789012"},
		{"tstz", "timestamptz", "'2024-02-29 12:34:56.789012+01'", `"2024-02-29T11:34:56.789012+00:00"`, "2024-02-29T11:34:56.789012+00:00"},
		{"tstz_inf", "timestamptz", "'infinity'", `"infinity"`, "infinity"},
		{"iv", "interval", "'1 year 2 mons 3 days 04:05:06.5'", `"1 year 2 mons 3 days 04:05:06.5"`, "1 year 2 mons 3 days 04:05:06.5"},
		{"ints", "int[]", "'{1,NULL,3}'", "[1,null,3]", []any{n("1"), nil, n("3")}},
		{"texts", "text[]", `ARRAY['a', 'b c', NULL, '"q"']`, `["a","b c",null,"\"q\""]`, []any{"a", "b c", nil, `"q"`}},
		{"matrix", "int[]", "'{{1,2},{3,4}}'", "[[1,2],[3,4]]", []any{[]any{n("1"), n("2")}, []any{n("3"), n("4")}}},
		{"bounded", "int[]", "'[2:3]={7,8}'", "[7,8]", []any{n("7"), n("8")}},
		{"comp", "pair", "ROW(1, 'a b')", `{"x":1,"y":"a b"}`, map[string]any{"x": n("1"), "y": "a b"}},
		{"js", "json", `'{"b":1, "a":[1.50, 2], "b":2}'`, `{"b":1, "a":[1.50, 2], "b":2}`, map[string]any{"a": []any{n("1.50"), n("2")}, "b": n("2")}},
		{"jsb", "jsonb", `'{"n": 12345678901234567890.5, "s": "x"}'`, `{"n": 12345678901234567890.5, "s": "x"}`, map[string]any{"n": n("12345678901234567890.5"), "s": "x"}},
		{"jsb_null", "jsonb", `'null'`, "null", nil},
		{"nothing", "text", "NULL", "null", nil},
		{"no_num", "numeric", "NULL", "null", nil},
	}

	cols := []string{"id int PRIMARY KEY"}
	names := []string{"id"}
	lits := []string{"1"}
	for _, tt := range tests {
		cols = append(cols, tt.col+" "+tt.typ)
		names = append(names, tt.col)
		lits = append(lits, tt.lit)
	}
	ctx, pool := setup(t, `
		CREATE TYPE mood AS ENUM ('happy', 'it''s "ok"');
		CREATE TYPE pair AS (x int, y text);
		CREATE TABLE types (`+strings.Join(cols, ", ")+`)`)
	_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "types"})
	require.NoError(t, err)
	withServerDefaults(t, ctx, pool, `INSERT INTO types (`+strings.Join(names, ", ")+`) VALUES (`+strings.Join(lits, ", ")+`)`)

	rows := rawOutbox(t, ctx, pool)
	require.Len(t, rows, 1)
	require.Equal(t, "1", string(rows[0].Key))
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(rows[0].Data, &raw))
	require.Len(t, raw, len(tests)+1, "one field per column")
	decoded, ok := decodeExact(t, rows[0].Data).(map[string]any)
	require.True(t, ok)
	for _, tt := range tests {
		t.Run(tt.col+" "+tt.typ, func(t *testing.T) {
			require.Contains(t, raw, tt.col)
			require.Equal(t, tt.raw, string(raw[tt.col]), "raw JSON of %s %s = %s", tt.col, tt.typ, tt.lit)
			require.Equal(t, tt.want, decoded[tt.col])
		})
	}

	// Changes keep numbers exact too.
	withServerDefaults(t, ctx, pool, `UPDATE types SET num = num + 1, big = big + 1, f8 = 'NaN'`)
	rows = rawOutbox(t, ctx, pool)
	require.Len(t, rows, 2)
	require.Equal(t, "update", rows[1].Action)
	require.ElementsMatch(t, []any{
		map[string]any{"field": "num", "old": n("12345678901234567890.123456789"), "new": n("12345678901234567891.123456789")},
		map[string]any{"field": "big", "old": n("9007199254740993"), "new": n("9007199254740994")},
		map[string]any{"field": "f8", "old": n("0.1"), "new": "NaN"},
	}, decodeExact(t, rows[1].Changes))
}

// TestCaptureJSONIgnoresWriterSession writes the same value under the
// server's default settings and under a writer session that changed one
// setting: the captured JSON must be the same, since consumers cannot know
// how the writer's session was configured. The same for a table with
// options, whose capture function is its own, and through that function's
// fallback for a filter that fails.
func TestCaptureJSONIgnoresWriterSession(t *testing.T) {
	t.Run("cdc", func(t *testing.T) { testCaptureJSONIgnoresWriterSession(t, sqlkit.CaptureOptions{}) })
	t.Run("options", func(t *testing.T) {
		testCaptureJSONIgnoresWriterSession(t, sqlkit.CaptureOptions{Where: "id > 0"})
	})
	// A filter that fails on every row: each statement is captured
	// unfiltered, by the capture function's exception handler.
	t.Run("failing filter", func(t *testing.T) {
		testCaptureJSONIgnoresWriterSession(t, sqlkit.CaptureOptions{Where: "id / (id - id) > 0"})
	})
}

func testCaptureJSONIgnoresWriterSession(t *testing.T, opts sqlkit.CaptureOptions) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE vals (id int PRIMARY KEY, v_tstz timestamptz, v_iv interval, v_bin bytea, v_f8 float8, v_f4 real, v_day date, v_ts timestamp)`)
	_, err := sqlkit.EnsureCDCWith(ctx, pool, opts, sqlkit.Table{Name: "vals"})
	require.NoError(t, err)

	tests := []struct {
		setting, value string
		col, lit       string
	}{
		// '+05:30' instead of '+00:00': the same instant, but not the same text.
		{"TimeZone", "Asia/Kolkata", "v_tstz", "'2024-02-29 12:34:56.789012+01'"},
		// "P1Y2M3DT4H5M6.5S" instead of "1 year 2 mons 3 days 04:05:06.5".
		{"IntervalStyle", "iso_8601", "v_iv", "'1 year 2 mons 3 days 04:05:06.5'"},
		{"IntervalStyle", "sql_standard", "v_iv", "'1 year 2 mons 3 days 04:05:06.5'"},
		// "\\336\\255\\276\\357\\000" instead of "\\xdeadbeef00".
		{"bytea_output", "escape", "v_bin", `'\xdeadbeef00'`},
		// 0.123456789012 instead of 0.12345678901234568: digits are lost.
		{"extra_float_digits", "-3", "v_f8", "0.12345678901234567890"},
		{"extra_float_digits", "-3", "v_f4", "1.2345678"},
		// Dates and timestamps are always ISO 8601 in JSON.
		{"DateStyle", "SQL, DMY", "v_day", "'2024-01-02'"},
		{"DateStyle", "German", "v_ts", "'2024-02-29 12:34:56.789012'"},
		{"TimeZone", "Asia/Kolkata", "v_ts", "'2024-02-29 12:34:56.789012'"},
	}
	for i, tt := range tests {
		t.Run(tt.setting+"="+tt.value+" "+tt.col, func(t *testing.T) {
			base := 10 * (i + 1)
			withServerDefaults(t, ctx, pool, fmt.Sprintf(`INSERT INTO vals (id, %s) VALUES (%d, %s)`, tt.col, base, tt.lit))
			require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				var before string
				if err := tx.QueryRow(ctx, `SELECT set_config($1, $2, true)`, tt.setting, tt.value).Scan(&before); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO vals (id, %s) VALUES (%d, %s)`, tt.col, base+1, tt.lit)); err != nil {
					return err
				}
				// The capture gave the writer's session its settings back.
				var value, path string
				if err := tx.QueryRow(ctx, `SELECT current_setting($1), current_setting('search_path')`, tt.setting).Scan(&value, &path); err != nil {
					return err
				}
				require.Equal(t, before, value)
				require.Equal(t, `"$user", public`, path)
				return nil
			}))
			var want, got json.RawMessage
			for _, r := range rawOutbox(t, ctx, pool) {
				var d map[string]json.RawMessage
				require.NoError(t, json.Unmarshal(r.Data, &d))
				switch string(r.Key) {
				case fmt.Sprint(base):
					want = d[tt.col]
				case fmt.Sprint(base + 1):
					got = d[tt.col]
				}
			}
			require.NotEmpty(t, want)
			require.Equal(t, string(want), string(got), "%s = %s changed the captured JSON", tt.setting, tt.value)
		})
	}
}

// tail returns the outbox rows after the first skip ones.
func tail(t *testing.T, ctx context.Context, pool *pgxpool.Pool, skip int) []outboxRow {
	t.Helper()
	rows := outboxNow(t, ctx, pool)
	require.GreaterOrEqual(t, len(rows), skip)
	return rows[skip:]
}

// TestCaptureFollowsSchemaChanges alters a captured table step by step; each
// step's events must describe the table as it is at that moment.
func TestCaptureFollowsSchemaChanges(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `
		CREATE TABLE evolve (id int PRIMARY KEY, a text, b int);
		CREATE TABLE pairs (a int, b text, v int, PRIMARY KEY (a, b));`)
	_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "evolve"}, sqlkit.Table{Name: "pairs"})
	require.NoError(t, err)

	type obj = map[string]any
	type chg = []any
	steps := []struct {
		name string
		sql  string
		want []outboxRow
	}{
		{"insert", `INSERT INTO evolve VALUES (1, 'a', 1), (2, 'b', 2)`, []outboxRow{
			{"public", "evolve", "insert", 1.0, obj{"id": 1.0, "a": "a", "b": 1.0}, nil},
			{"public", "evolve", "insert", 2.0, obj{"id": 2.0, "a": "b", "b": 2.0}, nil},
		}},
		{"add column", `
			ALTER TABLE evolve ADD COLUMN c text DEFAULT 'dflt';
			INSERT INTO evolve VALUES (3, 'c', 3, 'c3');
			UPDATE evolve SET b = 10 WHERE id = 1;`, []outboxRow{
			{"public", "evolve", "insert", 3.0, obj{"id": 3.0, "a": "c", "b": 3.0, "c": "c3"}, nil},
			// The row written before ADD COLUMN reads the default on both
			// sides: only b changed.
			{"public", "evolve", "update", 1.0, obj{"id": 1.0, "a": "a", "b": 10.0, "c": "dflt"},
				chg{obj{"field": "b", "old": 1.0, "new": 10.0}}},
		}},
		{"drop column", `
			ALTER TABLE evolve DROP COLUMN a;
			INSERT INTO evolve VALUES (4, 4, 'c4');
			UPDATE evolve SET c = 'x' WHERE id = 2;`, []outboxRow{
			{"public", "evolve", "insert", 4.0, obj{"id": 4.0, "b": 4.0, "c": "c4"}, nil},
			{"public", "evolve", "update", 2.0, obj{"id": 2.0, "b": 2.0, "c": "x"},
				chg{obj{"field": "c", "old": "dflt", "new": "x"}}},
		}},
		{"rename columns, the key column too", `
			ALTER TABLE evolve RENAME COLUMN b TO bee;
			ALTER TABLE evolve RENAME COLUMN id TO "Pk Col";
			UPDATE evolve SET bee = 40 WHERE "Pk Col" = 4;
			DELETE FROM evolve WHERE "Pk Col" = 3;
			INSERT INTO evolve VALUES (5, 5, 'c5');`, []outboxRow{
			{"public", "evolve", "update", 4.0, obj{"Pk Col": 4.0, "bee": 40.0, "c": "c4"},
				chg{obj{"field": "bee", "old": 4.0, "new": 40.0}}},
			{"public", "evolve", "delete", 3.0, obj{"Pk Col": 3.0, "bee": 3.0, "c": "c3"}, nil},
			{"public", "evolve", "insert", 5.0, obj{"Pk Col": 5.0, "bee": 5.0, "c": "c5"}, nil},
		}},
		{"rename a composite key's column", `
			INSERT INTO pairs VALUES (1, 'x', 1);
			ALTER TABLE pairs RENAME COLUMN a TO a2;
			UPDATE pairs SET v = 2;`, []outboxRow{
			{"public", "pairs", "insert", obj{"a": 1.0, "b": "x"}, obj{"a": 1.0, "b": "x", "v": 1.0}, nil},
			{"public", "pairs", "update", obj{"a2": 1.0, "b": "x"}, obj{"a2": 1.0, "b": "x", "v": 2.0},
				chg{obj{"field": "v", "old": 1.0, "new": 2.0}}},
		}},
		{"rename table", `
			ALTER TABLE evolve RENAME TO "Evolved";
			UPDATE "Evolved" SET c = 'renamed' WHERE "Pk Col" = 5;`, []outboxRow{
			{"public", "Evolved", "update", 5.0, obj{"Pk Col": 5.0, "bee": 5.0, "c": "renamed"},
				chg{obj{"field": "c", "old": "c5", "new": "renamed"}}},
		}},
		{"set schema", `
			CREATE SCHEMA moved;
			ALTER TABLE "Evolved" SET SCHEMA moved;
			DELETE FROM moved."Evolved" WHERE "Pk Col" = 5;`, []outboxRow{
			{"moved", "Evolved", "delete", 5.0, obj{"Pk Col": 5.0, "bee": 5.0, "c": "renamed"}, nil},
		}},
		{"change a column's type", `
			ALTER TABLE moved."Evolved" ALTER COLUMN bee TYPE text;
			UPDATE moved."Evolved" SET bee = 'forty' WHERE "Pk Col" = 4;`, []outboxRow{
			{"moved", "Evolved", "update", 4.0, obj{"Pk Col": 4.0, "bee": "forty", "c": "c4"},
				chg{obj{"field": "bee", "old": "40", "new": "forty"}}},
		}},
		{"replace the primary key", `
			ALTER TABLE moved."Evolved" DROP CONSTRAINT evolve_pkey, ADD PRIMARY KEY (bee);
			UPDATE moved."Evolved" SET c = 'new key' WHERE "Pk Col" = 4;`, []outboxRow{
			{"moved", "Evolved", "update", "forty", obj{"Pk Col": 4.0, "bee": "forty", "c": "new key"},
				chg{obj{"field": "c", "old": "c4", "new": "new key"}}},
		}},
		{"truncate gives one row, however many rows the table had", `TRUNCATE moved."Evolved"`, []outboxRow{
			{"moved", "Evolved", "truncate", nil, nil, nil},
		}},
		{"truncate of two tables gives one row each", `
			INSERT INTO moved."Evolved" VALUES (6, '6', 'c6'), (7, '7', 'c7');
			INSERT INTO pairs VALUES (2, 'y', 2);
			TRUNCATE moved."Evolved", pairs;`, []outboxRow{
			{"moved", "Evolved", "insert", "6", obj{"Pk Col": 6.0, "bee": "6", "c": "c6"}, nil},
			{"moved", "Evolved", "insert", "7", obj{"Pk Col": 7.0, "bee": "7", "c": "c7"}, nil},
			{"public", "pairs", "insert", obj{"a2": 2.0, "b": "y"}, obj{"a2": 2.0, "b": "y", "v": 2.0}, nil},
			{"moved", "Evolved", "truncate", nil, nil, nil},
			{"public", "pairs", "truncate", nil, nil, nil},
		}},
	}
	seen := 0
	for _, st := range steps {
		_, err := pool.Exec(ctx, st.sql)
		require.NoError(t, err, st.name)
		got := tail(t, ctx, pool, seen)
		require.Equal(t, st.want, got, st.name)
		seen += len(got)
	}

	tables, err := sqlkit.CDCTables(ctx, pool)
	require.NoError(t, err)
	require.ElementsMatch(t, []sqlkit.Table{{"moved", "Evolved"}, {"public", "pairs"}}, tables,
		"CDC follows the table through renames")

	// DROP TABLE: the events written before it stay in the outbox, readable.
	_, err = pool.Exec(ctx, `INSERT INTO moved."Evolved" VALUES (8, '8', 'last')`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `DROP TABLE moved."Evolved"; DROP SCHEMA moved`)
	require.NoError(t, err)
	got := tail(t, ctx, pool, seen)
	require.Equal(t, []outboxRow{
		{"moved", "Evolved", "insert", "8", obj{"Pk Col": 8.0, "bee": "8", "c": "last"}, nil},
	}, got, "DROP TABLE writes no event and removes none")
	require.Len(t, outboxNow(t, ctx, pool), seen+1)
	tables, err = sqlkit.CDCTables(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, []sqlkit.Table{{"public", "pairs"}}, tables)
}

// TestCapturePartitionedTable writes through the partitioned table: every
// partition's rows are captured under the parent's name.
func TestCapturePartitionedTable(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `
		CREATE TABLE parted (id int, k int, v text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
		CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
		CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (100) TO (200);`)
	_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "parted"})
	require.NoError(t, err)

	type obj = map[string]any
	_, err = pool.Exec(ctx, `
		INSERT INTO parted VALUES (1, 5, 'a'), (2, 150, 'b');
		UPDATE parted SET v = 'z';
		UPDATE parted SET k = 160 WHERE id = 1; -- moves the row to parted_2
		DELETE FROM parted WHERE id = 2;
		TRUNCATE parted;`)
	require.NoError(t, err)
	// A partition created after CDC was enabled is covered too.
	_, err = pool.Exec(ctx, `
		CREATE TABLE parted_3 PARTITION OF parted FOR VALUES FROM (200) TO (300);
		INSERT INTO parted VALUES (3, 250, 'c');`)
	require.NoError(t, err)

	key := func(id, k float64) obj { return obj{"id": id, "k": k} }
	require.Equal(t, []outboxRow{
		{"public", "parted", "insert", key(1, 5), obj{"id": 1.0, "k": 5.0, "v": "a"}, nil},
		{"public", "parted", "insert", key(2, 150), obj{"id": 2.0, "k": 150.0, "v": "b"}, nil},
		{"public", "parted", "update", key(1, 5), obj{"id": 1.0, "k": 5.0, "v": "z"},
			[]any{obj{"field": "v", "old": "a", "new": "z"}}},
		{"public", "parted", "update", key(2, 150), obj{"id": 2.0, "k": 150.0, "v": "z"},
			[]any{obj{"field": "v", "old": "b", "new": "z"}}},
		// k is part of the key: a new key is a delete and an insert.
		{"public", "parted", "delete", key(1, 5), obj{"id": 1.0, "k": 5.0, "v": "z"}, nil},
		{"public", "parted", "insert", key(1, 160), obj{"id": 1.0, "k": 160.0, "v": "z"}, nil},
		{"public", "parted", "delete", key(2, 150), obj{"id": 2.0, "k": 150.0, "v": "z"}, nil},
		{"public", "parted", "truncate", nil, nil, nil},
		{"public", "parted", "insert", key(3, 250), obj{"id": 3.0, "k": 250.0, "v": "c"}, nil},
	}, outboxNow(t, ctx, pool))
}

// TestCapturePartitionWrittenDirectly writes to the partitions themselves,
// which applications are free to do.
func TestCapturePartitionWrittenDirectly(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `
		CREATE TABLE parted (id int, k int, v text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
		CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
		CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (100) TO (200);`)
	_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "parted"})
	require.NoError(t, err)

	type obj = map[string]any
	_, err = pool.Exec(ctx, `
		INSERT INTO parted VALUES (1, 5, 'via parent');
		INSERT INTO parted_1 VALUES (2, 6, 'direct');
		UPDATE parted_1 SET v = 'direct update' WHERE id = 1;
		DELETE FROM parted_1 WHERE id = 2;
		INSERT INTO parted_2 VALUES (3, 150, 'direct');
		TRUNCATE parted_2;
		TRUNCATE parted;`)
	require.NoError(t, err)
	key := func(id, k float64) obj { return obj{"id": id, "k": k} }
	require.Equal(t, []outboxRow{
		{"public", "parted", "insert", key(1, 5), obj{"id": 1.0, "k": 5.0, "v": "via parent"}, nil},
		{"public", "parted", "insert", key(2, 6), obj{"id": 2.0, "k": 6.0, "v": "direct"}, nil},
		{"public", "parted", "update", key(1, 5), obj{"id": 1.0, "k": 5.0, "v": "direct update"},
			[]any{obj{"field": "v", "old": "via parent", "new": "direct update"}}},
		{"public", "parted", "delete", key(2, 6), obj{"id": 2.0, "k": 6.0, "v": "direct"}, nil},
		{"public", "parted", "insert", key(3, 150), obj{"id": 3.0, "k": 150.0, "v": "direct"}, nil},
		// One partition: named in data.
		{"public", "parted", "truncate", nil, obj{"partition": "public.parted_2"}, nil},
		// The whole partitioned table: one event, although each partition's
		// TRUNCATE trigger fires too.
		{"public", "parted", "truncate", nil, nil, nil},
	}, outboxNow(t, ctx, pool))
}

// TestCaptureAfterPrimaryKeyDropped: the table lost its primary key after CDC
// was enabled. The application's writes must go on, with NULL keys.
func TestCaptureAfterPrimaryKeyDropped(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE lost (id int PRIMARY KEY, v text)`)
	_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "lost"})
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `ALTER TABLE lost DROP CONSTRAINT lost_pkey`)
	require.NoError(t, err)

	for _, stmt := range []string{
		`INSERT INTO lost VALUES (1, 'a'), (2, 'b'), (2, 'duplicate now allowed')`,
		`UPDATE lost SET v = 'z' WHERE id = 1`,
		`DELETE FROM lost WHERE id = 2`,
		`TRUNCATE lost`,
	} {
		_, err := pool.Exec(ctx, stmt)
		require.NoError(t, err, stmt)
	}

	rows := outboxNow(t, ctx, pool)
	var got []string
	updated := false
	for _, r := range rows {
		require.Nil(t, r.Key, "%s event without a primary key", r.Action)
		got = append(got, fmt.Sprintf("%s %v", r.Action, r.Data))
		if r.Action != "delete" && fmt.Sprint(r.Data) == "map[id:1 v:z]" {
			updated = true
		}
	}
	require.Subset(t, got, []string{
		"insert map[id:1 v:a]",
		"insert map[id:2 v:b]",
		"insert map[id:2 v:duplicate now allowed]",
		"delete map[id:2 v:b]",
		"delete map[id:2 v:duplicate now allowed]",
		"truncate <nil>",
	})
	// How the update is reported: see TestCaptureWithoutPrimaryKeyReportsUpdates.
	require.True(t, updated, "the updated row is captured: %q", got)

	// The triggers stay, but a repeated ensure-cdc now refuses the table.
	_, err = sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "lost"})
	require.ErrorIs(t, err, sqlkit.ErrNoPrimaryKey)
	tables, err := sqlkit.CDCTables(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, []sqlkit.Table{{"public", "lost"}}, tables)
}

// TestCaptureWithoutPrimaryKeyReportsUpdates: without a key, an UPDATE should
// still be reported as an update, and a no-op UPDATE not at all.
func TestCaptureWithoutPrimaryKeyReportsUpdates(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE lost (id int PRIMARY KEY, v text)`)
	_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "lost"})
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `ALTER TABLE lost DROP CONSTRAINT lost_pkey; INSERT INTO lost VALUES (1, 'a'), (2, 'b')`)
	require.NoError(t, err)
	before := len(outboxNow(t, ctx, pool))

	_, err = pool.Exec(ctx, `UPDATE lost SET v = v`)
	require.NoError(t, err)
	require.Empty(t, tail(t, ctx, pool, before), "a no-op UPDATE changes nothing")

	_, err = pool.Exec(ctx, `UPDATE lost SET v = 'z' WHERE id = 1`)
	require.NoError(t, err)
	require.Equal(t, []outboxRow{
		{"public", "lost", "update", nil, map[string]any{"id": 1.0, "v": "z"},
			[]any{map[string]any{"field": "v", "old": "a", "new": "z"}}},
	}, tail(t, ctx, pool, before))
}

func TestEnsureCDCForRefusesTemporaryTables(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, "")
	// A temporary table exists in one session only: use that one.
	conn := mustConn(t, ctx, pool)
	_, err := conn.Exec(ctx, `CREATE TEMPORARY TABLE scratch (id int PRIMARY KEY)`)
	require.NoError(t, err)

	for _, tbl := range []sqlkit.Table{{Name: "scratch"}, {Schema: "pg_temp", Name: "scratch"}} {
		_, err = sqlkit.EnsureCDCFor(ctx, conn, tbl)
		require.ErrorIs(t, err, sqlkit.ErrNotCapturable, tbl.String())
		require.ErrorContains(t, err, "is a temporary table")
	}
	tables, err := sqlkit.CDCTables(ctx, conn)
	require.NoError(t, err)
	require.Empty(t, tables)
	_, err = conn.Exec(ctx, `INSERT INTO scratch VALUES (1)`)
	require.NoError(t, err)
	require.Empty(t, outboxNow(t, ctx, pool))

	// Other sessions do not see it at all.
	_, err = sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Schema: "pg_temp", Name: "scratch"})
	require.ErrorIs(t, err, sqlkit.ErrTableNotFound)
}

// randomText returns n random characters. Random, so that a value cut,
// shifted or mixed up with another cannot compare equal; base64, so that
// pglz gives up compressing it quickly.
func randomText(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}

func TestCaptureLargeRow(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE docs (id int PRIMARY KEY, body text)`)
	_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "docs"})
	require.NoError(t, err)
	const size = 5 << 20
	first, second := randomText(t, size), randomText(t, size)

	_, err = pool.Exec(ctx, `INSERT INTO docs VALUES (1, $1)`, first)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE docs SET body = $1`, second)
	require.NoError(t, err)

	// The values need no JSON escaping, so the expected JSON is easily
	// built; compared as bytes, since a failure's diff would be 5 MB.
	rows := rawOutbox(t, ctx, pool)
	require.Len(t, rows, 2)
	require.Len(t, rows[0].Data, size+len(`{"id":1,"body":""}`))
	require.True(t, string(rows[0].Data) == `{"id":1,"body":"`+first+`"}`, "insert: the 5 MB value is captured whole")
	require.True(t, string(rows[1].Data) == `{"id":1,"body":"`+second+`"}`, "update: the new 5 MB value is captured whole")
	require.True(t, string(rows[1].Changes) == `[{"field":"body","old":"`+first+`","new":"`+second+`"}]`,
		"changes carry both values whole")
}

// TestCDCWithHostileNames runs names that need quoting, or that are SQL,
// through ParseTable, EnsureCDCFor, capture and RemoveCDCFor.
func TestCDCWithHostileNames(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE canary (id int PRIMARY KEY)`)
	tests := []struct {
		name  string
		table sqlkit.Table
	}{
		{"quotes", sqlkit.Table{Schema: `we"ird`, Name: `"ta""ble"`}},
		{"spaces and capitals", sqlkit.Table{Schema: "My Schema", Name: " My Table "}},
		{"dots", sqlkit.Table{Schema: "a.b", Name: "c.d.e"}},
		{"unicode", sqlkit.Table{Schema: "Ünïcödé 🚀", Name: "表\u2028名"}},
		{"sql", sqlkit.Table{Schema: `x"; DROP TABLE public.canary; --`, Name: `'); DROP TABLE public.canary; --`}},
		{"reserved words", sqlkit.Table{Schema: "select", Name: "from"}},
		{"format verbs", sqlkit.Table{Schema: "%s%I%L", Name: "$1 %%"}},
		{"backslashes", sqlkit.Table{Schema: `back\slash`, Name: `\x00\'`}},
		{"capitals only", sqlkit.Table{Schema: "public", Name: "Users"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := tt.table
			qualified := pgx.Identifier{tbl.Schema, tbl.Name}.Sanitize()
			key := `k"ey ` + tbl.Name
			keyCol := pgx.Identifier{key}.Sanitize()
			ddl := fmt.Sprintf(`CREATE TABLE %s (%s int PRIMARY KEY, v text)`, qualified, keyCol)
			if tbl.Schema != "public" {
				ddl = fmt.Sprintf(`CREATE SCHEMA %s; `, pgx.Identifier{tbl.Schema}.Sanitize()) + ddl
			}
			_, err := pool.Exec(ctx, ddl)
			require.NoError(t, err)

			parsed, err := sqlkit.ParseTable(tbl.String())
			require.NoError(t, err, tbl.String())
			require.Equal(t, tbl, parsed, "%s parses back", tbl.String())

			res, err := sqlkit.EnsureCDCFor(ctx, pool, parsed)
			require.NoError(t, err)
			require.Equal(t, []sqlkit.TableResult{{tbl, "installed"}}, res)
			tables, err := sqlkit.CDCTables(ctx, pool)
			require.NoError(t, err)
			require.Contains(t, tables, tbl)

			_, err = pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s VALUES (%d, 'x'); UPDATE %s SET v = 'y'`, qualified, i, qualified))
			require.NoError(t, err)
			var mine []outboxRow
			for _, r := range outboxNow(t, ctx, pool) {
				if r.Schema == tbl.Schema && r.Table == tbl.Name {
					mine = append(mine, r)
				}
			}
			require.Equal(t, []outboxRow{
				{tbl.Schema, tbl.Name, "insert", float64(i), map[string]any{key: float64(i), "v": "x"}, nil},
				{tbl.Schema, tbl.Name, "update", float64(i), map[string]any{key: float64(i), "v": "y"},
					[]any{map[string]any{"field": "v", "old": "x", "new": "y"}}},
			}, mine)

			res, err = sqlkit.RemoveCDCFor(ctx, pool, parsed)
			require.NoError(t, err)
			require.Equal(t, []sqlkit.TableResult{{tbl, "removed"}}, res)
			tables, err = sqlkit.CDCTables(ctx, pool)
			require.NoError(t, err)
			require.NotContains(t, tables, tbl)
			before := len(outboxNow(t, ctx, pool))
			_, err = pool.Exec(ctx, fmt.Sprintf(`DELETE FROM %s`, qualified))
			require.NoError(t, err)
			require.Len(t, outboxNow(t, ctx, pool), before, "nothing captured once removed")
		})
	}
	var canary bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT to_regclass('public.canary') IS NOT NULL`).Scan(&canary))
	require.True(t, canary, "no name was ever run as SQL")
}

// TestCaptureCutsLargeStatementsBySize writes one statement whose rows make
// far more JSON than one chunk may hold: it is cut into several outbox rows,
// and every row arrives whole, in order.
func TestCaptureCutsLargeStatementsBySize(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE docs (id int PRIMARY KEY, body text)`)
	_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "docs"})
	require.NoError(t, err)
	const rows, size = 8, 5 << 20 // 40 MB of JSON; chunks stop near 16 MB
	body := randomText(t, size)
	_, err = pool.Exec(ctx, `INSERT INTO docs SELECT g, $1 FROM generate_series(1, $2::int) g`, body, rows)
	require.NoError(t, err)

	var chunks int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM cdc.outbox`).Scan(&chunks))
	require.Greater(t, chunks, 1, "cut into several outbox rows")
	require.Less(t, chunks, rows, "but not one per row")

	events := rawOutbox(t, ctx, pool)
	require.Len(t, events, rows)
	for i, e := range events {
		require.Equal(t, fmt.Sprint(i+1), string(e.Key))
		require.True(t, string(e.Data) == fmt.Sprintf(`{"id":%d,"body":"%s"}`, i+1, body), "row %d whole", i+1)
		if i > 0 {
			require.Greater(t, e.ID, events[i-1].ID)
		}
	}
}
