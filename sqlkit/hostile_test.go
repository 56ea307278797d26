package sqlkit_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// shadowCatalog makes schema evil shadow, with the same names and argument
// types, the pg_catalog operators, functions, aggregates and types a
// capture could name, each one raising "hijacked" when called. A session
// with search_path "evil, pg_catalog" then resolves to them every such
// name written without its schema.
const shadowCatalog = `
CREATE SCHEMA evil;
DO $do$
DECLARE
    o record;
    common constant regtype[] := '{text,int2,int4,int8,bool,oid,name,xid8,numeric,json,jsonb,regclass,text[],int2[]}';
BEGIN
    FOR o IN
        SELECT p.oid, p.oprname, p.oprleft::regtype AS l, p.oprright::regtype AS r, p.oprresult::regtype AS res
        FROM pg_operator p
        WHERE p.oprnamespace = 'pg_catalog'::regnamespace AND p.oprkind = 'b'
          AND p.oprleft = ANY (common) AND p.oprright = ANY (common)
    LOOP
        EXECUTE format('CREATE FUNCTION evil.op_%s(%s, %s) RETURNS %s LANGUAGE plpgsql AS $f$BEGIN RAISE EXCEPTION ''hijacked: operator %s''; END$f$',
                       o.oid, o.l, o.r, o.res, o.oid);
        EXECUTE format('CREATE OPERATOR evil.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.op_%s)', o.oprname, o.l, o.r, o.oid);
    END LOOP;
    FOR o IN
        SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args, p.prorettype::regtype AS res
        FROM pg_proc p
        WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f' AND NOT p.proretset
          AND p.proname IN ('current_setting', 'set_config', 'pg_sequence_last_value', 'to_regclass', 'split_part',
                            'substr', 'strpos', 'length', 'pg_notify', 'pg_current_xact_id', 'to_json', 'to_jsonb',
                            'jsonb_build_object', 'pg_partition_root', 'cardinality', 'array_lower', 'array_upper')
          AND NOT EXISTS (SELECT FROM unnest(p.proargtypes) a(t) JOIN pg_type y ON y.oid = a.t
                          WHERE y.typtype = 'p' AND y.typname <> 'anyelement')
          AND (SELECT typtype FROM pg_type WHERE oid = p.prorettype) <> 'p'
    LOOP
        EXECUTE format('CREATE FUNCTION evil.%I(%s) RETURNS %s LANGUAGE plpgsql AS $f$BEGIN RAISE EXCEPTION ''hijacked: %s''; END$f$',
                       o.proname, o.args, o.res, o.proname);
    END LOOP;
    CREATE FUNCTION evil.step(int8) RETURNS int8 LANGUAGE plpgsql AS $f$BEGIN RAISE EXCEPTION 'hijacked: aggregate'; END$f$;
    CREATE FUNCTION evil.step(int8, anyelement) RETURNS int8 LANGUAGE plpgsql AS $f$BEGIN RAISE EXCEPTION 'hijacked: aggregate'; END$f$;
    CREATE AGGREGATE evil.count(*) (SFUNC = evil.step, STYPE = int8);
    CREATE AGGREGATE evil.sum(int4) (SFUNC = evil.step, STYPE = int8);
    CREATE AGGREGATE evil.json_agg(anyelement) (SFUNC = evil.step, STYPE = int8);
    CREATE AGGREGATE evil.array_agg(anyelement) (SFUNC = evil.step, STYPE = int8);
    CREATE DOMAIN evil.text AS int CHECK (evil.step(VALUE) > 0);
    CREATE DOMAIN evil.oid AS int CHECK (evil.step(VALUE) > 0);
END
$do$;`

// TestCaptureSurvivesHostileSearchPath writes, from a session whose
// search_path puts a schema that shadows pg_catalog first, every kind of
// statement through both of cdc.capture()'s paths (the first statement of a
// session looks the key up, later ones take the common path) and through a
// capture function made for options. None may call the shadows, since the
// capture runs with its owner's rights, and every change must be captured.
func TestCaptureSurvivesHostileSearchPath(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `
		CREATE TABLE items (id int PRIMARY KEY, v text);
		CREATE TABLE kept (id int PRIMARY KEY, v text, secret text);`+shadowCatalog)
	_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "items"})
	require.NoError(t, err)
	_, err = sqlkit.EnsureCDCWith(ctx, pool,
		sqlkit.CaptureOptions{Where: "id > 0", ExcludeColumns: []string{"secret"}}, sqlkit.Table{Name: "kept"})
	require.NoError(t, err)

	// The common path, without SET clauses, is what is tested here.
	var config []string
	require.NoError(t, pool.QueryRow(ctx, `SELECT proconfig FROM pg_proc WHERE oid = 'cdc.capture()'::regprocedure`).Scan(&config))
	require.Empty(t, config)

	// As if a relay waited, so that the captures notify too.
	_, err = pool.Exec(ctx, `SELECT nextval('cdc.relay_wake_enter')`)
	require.NoError(t, err)

	pc, err := pool.Acquire(ctx)
	require.NoError(t, err)
	conn := pc.Hijack() // its search_path must not reach the pool
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `SET search_path = evil, pg_catalog, public`)
	require.NoError(t, err)
	for _, table := range []string{"items", "kept"} {
		for _, q := range []string{
			`INSERT INTO %s VALUES (1, 'a')`,
			`INSERT INTO %s VALUES (2, 'b'), (3, 'c')`,
			`UPDATE %s SET v = 'z' WHERE id OPERATOR(pg_catalog.=) 2`,
			`DELETE FROM %s WHERE id OPERATOR(pg_catalog.=) 3`,
		} {
			_, err := conn.Exec(ctx, fmt.Sprintf(q, table))
			require.NoError(t, err, fmt.Sprintf(q, table))
		}
	}

	type event struct{ table, action, data string }
	var got []event
	for _, r := range readOutbox(t, ctx, pool) {
		got = append(got, event{r.Table, r.Action, fmt.Sprint(r.Data)})
	}
	var want []event
	for _, table := range []string{"items", "kept"} {
		want = append(want,
			event{table, "insert", "map[id:1 v:a]"}, event{table, "insert", "map[id:2 v:b]"}, event{table, "insert", "map[id:3 v:c]"},
			event{table, "update", "map[id:2 v:z]"}, event{table, "delete", "map[id:3 v:c]"})
	}
	require.Equal(t, want, got)
}
