-- Capture functions made for tables with options. Installed by every
-- Migrate (see functions.go), which then remakes every such function from
-- the current code (90_refresh.sql).
--
-- A table with column or row options is not captured by cdc.capture(),
-- which would have to build its statement as text and have PostgreSQL plan
-- it anew for every statement (EXECUTE): that cost a single-row INSERT
-- more than the rest of its capture, and made a row filter that rejects
-- the row cost as much as capturing it. Its triggers call instead a
-- function written for its options, cdc.capture__<digest of the options'
-- shape>(), in which the statements are static SQL, so that PL/pgSQL
-- plans them once per session and a statement whose rows the filter
-- rejects costs one small query on the transition table. Tables whose
-- options have the same shape (the same row filter text, and whether there
-- are excluded and ignored columns) share one function; the columns
-- themselves are the triggers' arguments, by attribute number, so that
-- renames keep them (see cdc.capture_args).

-- cdc.capture_context returns what a capture function needs to know of the
-- trigger's table, besides its rows: the schema and table the events are
-- named after (for a partition, the partitioned table at the root), the
-- primary-key columns, and for a trigger with options (args, see
-- cdc.capture_args) the excluded and ignored columns' current names.
--
-- The key lookup costs more than the rest of a one-row statement's
-- capture, so its result is kept for the session in the setting
-- cdc.keys_<table oid>, tagged with the DDL generation: the event trigger
-- cdc.ddl_changed (installed when migrations ran as superuser) bumps
-- cdc.ddl_generation on every ALTER TABLE, so renamed or replaced key
-- columns are looked up again. Without the event trigger (migrations run
-- by a non-superuser, as on managed services), nothing is cached.
CREATE OR REPLACE FUNCTION cdc.capture_context(relid oid, args text[], tg_schema text, tg_table text,
                                                OUT sch text, OUT rel text, OUT keys text[],
                                                OUT excl text[], OUT ign text[])
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    gen    bigint;
    cached text;
BEGIN
    -- TG_ARGV counts from 0.
    args := args[array_lower(args, 1):array_upper(args, 1)];
    sch := tg_schema;
    rel := tg_table;
    -- On a partition (installed with the argument 'partition'), the event
    -- is named after the partitioned table at the root, whose channel
    -- consumers listen on. Statements addressed to the partitioned table
    -- fire only its own triggers, so nothing is captured twice.
    IF cardinality(args) > 0 AND args[1] = 'partition' THEN
        SELECT n.nspname, c.relname INTO sch, rel
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = pg_partition_root(relid);
    END IF;

    -- The sequence by its name looked up at run time, not as a regclass
    -- literal, which would fail every write where it does not exist.
    gen := pg_sequence_last_value(to_regclass('cdc.ddl_generation'));
    IF gen IS NOT NULL THEN
        cached := current_setting('cdc.keys_' || relid::text, true);
        IF cached LIKE gen::text || ':%' THEN
            keys := substr(cached, length(gen::text) + 2)::text[];
        END IF;
    END IF;
    IF keys IS NULL THEN
        SELECT array_agg(a.attname::text ORDER BY k.pos) INTO keys
        FROM pg_index i
        CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, pos)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = relid AND i.indisprimary AND k.pos <= i.indnkeyatts;
        IF gen IS NOT NULL AND keys IS NOT NULL THEN
            PERFORM set_config('cdc.keys_' || relid::text, gen::text || ':' || keys::text, false);
        END IF;
    END IF;

    excl := '{}';
    ign := '{}';
    -- The excluded and ignored columns by attribute number, so that renames
    -- keep them; no catalog lookup when there are none.
    IF cardinality(args) >= 4 AND (args[2] <> '{}' OR args[3] <> '{}') THEN
        SELECT coalesce(array_agg(a.attname::text) FILTER (WHERE a.attnum = ANY (args[2]::int2[])), '{}'),
               coalesce(array_agg(a.attname::text) FILTER (WHERE a.attnum = ANY (args[3]::int2[])), '{}')
        INTO excl, ign
        FROM pg_attribute a
        WHERE a.attrelid = relid AND a.attnum > 0 AND NOT a.attisdropped;
    END IF;
END
$fn$;

-- cdc.capture_function_name returns the name of the function that
-- captures action act ('insert', 'update', 'delete' or 'truncate') under
-- trigger arguments args (see cdc.capture_args): 'capture' for a truncate,
-- which carries no rows, and for no options (none or only 'partition');
-- otherwise capture__ and 16 hex digits of the digest of the options'
-- shape.
CREATE OR REPLACE FUNCTION cdc.capture_function_name(args text[], act text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN cardinality(args) < 4 OR act = 'truncate' THEN 'capture'
                ELSE 'capture__' || left(md5(args[4] || '|' || (args[2] <> '{}')::text || '|' || (args[3] <> '{}')::text), 16) END
$fn$;

-- cdc.is_capture_function tells whether fn is cdc.capture() or one of the
-- functions made for tables with options.
CREATE OR REPLACE FUNCTION cdc.is_capture_function(fn oid) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT EXISTS (SELECT FROM pg_proc p
                   WHERE p.oid = fn AND p.pronamespace = 'cdc'::regnamespace
                     AND (p.proname = 'capture' OR p.proname ~ '^capture__[0-9a-f]{16}$'))
$fn$;

-- cdc.capture_function_sql returns the CREATE OR REPLACE FUNCTION statement
-- of the capture function for trigger arguments args with options (see
-- cdc.capture_args, cdc.capture_function_name): their row filter, as
-- cdc.check_row_filter printed it ('' for none), and whether there are
-- excluded and ignored columns, make its statements, cdc.capture_statement's
-- with the function's variables in place of parameters.
--
-- The function's variables are qualified by its block label, and columns
-- win over variables (#variable_conflict use_column): the row filter names
-- the table's columns unqualified, whatever they are called. Their names
-- start with pgrelay_, so that a filter whose column was renamed or dropped
-- does not take a variable of the old name instead and reject every row
-- (a column n renamed made "n > 0" the variable n's, NULL): it fails, and
-- the rows are captured unfiltered. A filter that
-- no longer fits the table (a column it uses was renamed or dropped) must
-- not fail the application's write, nor lose its changes: they are then
-- captured unfiltered, with a warning, as before the filter was set.
CREATE OR REPLACE FUNCTION cdc.capture_function_sql(args text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    fname    constant text := cdc.capture_function_name(args, 'insert');
    filter   constant text := args[4];
    has_excl constant boolean := args[2] <> '{}';
    has_ign  constant boolean := args[3] <> '{}';
    vars constant text[] := ARRAY['pgrelay.pgrelay_sch', 'pgrelay.pgrelay_rel', 'pgrelay.pgrelay_keys', 'pgrelay.pgrelay_excl', 'pgrelay.pgrelay_ign'];
    into_n constant text := ' INTO pgrelay.pgrelay_n';
    context constant text :=
        'SELECT c.sch, c.rel, c.keys, c.excl, c.ign INTO pgrelay.pgrelay_sch, pgrelay.pgrelay_rel, pgrelay.pgrelay_keys, pgrelay.pgrelay_excl, pgrelay.pgrelay_ign '
        'FROM cdc.capture_context(TG_RELID, TG_ARGV, TG_TABLE_SCHEMA, TG_TABLE_NAME) c;';
    -- The settings the JSON depends on, pinned only where the session's
    -- differ (functions/05_settings.sql): once a statement has rows to
    -- capture, so that a statement the filter rejects costs no more; and
    -- again in the exception handler, since the failed block's pinning
    -- was undone with it.
    pin constant text := E'IF NOT cdc.capture_settings_ok() THEN\n    pgrelay.pgrelay_saved := cdc.capture_pin();\nEND IF;\n';
    pre_new text;
    pre_old text;
    capture text;
    body    text;
BEGIN
    -- Per action: a statement without rows, or of which the filter holds
    -- for no row, old or new, writes nothing, found with one small query
    -- before any other work (an UPDATE that matched no row cost 350 µs on
    -- a table with excluded columns without it, 24 with it); then the
    -- context, then the statement (for inserts and deletes first the one
    -- for a statement that fits one chunk).
    pre_new := 'NOT EXISTS (SELECT FROM new_rows x'
        || CASE WHEN filter <> '' THEN ' WHERE (' || filter || ') IS TRUE' ELSE '' END || ')';
    pre_old := 'NOT EXISTS (SELECT FROM old_rows x'
        || CASE WHEN filter <> '' THEN ' WHERE (' || filter || ') IS TRUE' ELSE '' END || ')';
    capture := 'IF TG_OP = ''INSERT'' THEN' || E'\n'
        || 'IF ' || pre_new || E' THEN RETURN NULL; END IF;\n'
        || pin || context || E'\n' || cdc.capture_chunk_statement('INSERT', has_excl, filter, vars) || E';\n'
        || E'GET DIAGNOSTICS pgrelay.pgrelay_n = ROW_COUNT;\nIF pgrelay.pgrelay_n = 0 THEN\n'
        || cdc.capture_statement('INSERT', has_excl, has_ign, filter, vars, into_n) || E';\nEND IF;'
        || E'\nELSIF TG_OP = ''DELETE'' THEN\n'
        || 'IF ' || pre_old || E' THEN RETURN NULL; END IF;\n'
        || pin || context || E'\n' || cdc.capture_chunk_statement('DELETE', has_excl, filter, vars) || E';\n'
        || E'GET DIAGNOSTICS pgrelay.pgrelay_n = ROW_COUNT;\nIF pgrelay.pgrelay_n = 0 THEN\n'
        || cdc.capture_statement('DELETE', has_excl, has_ign, filter, vars, into_n) || E';\nEND IF;'
        || E'\nELSE\n'
        || 'IF ' || pre_new || ' AND ' || pre_old || E' THEN RETURN NULL; END IF;\n'
        || pin || context || E'\n' || cdc.capture_statement('UPDATE', has_excl, has_ign, filter, vars, into_n) || E';\nEND IF;';
    IF filter <> '' THEN
        capture := E'BEGIN\n' || capture || E'\n'
            || 'EXCEPTION WHEN OTHERS THEN' || E'\n'
            || 'RAISE WARNING ''pgrelay: the row filter of %.% failed (%); this statement''''s rows are captured unfiltered: run relay ensure-cdc again'', '
            || 'TG_TABLE_SCHEMA, TG_TABLE_NAME, SQLERRM;' || E'\n'
            || pin || context || E'\n'
            || 'EXECUTE cdc.capture_sql(TG_OP, pgrelay.pgrelay_excl, pgrelay.pgrelay_ign, '''') INTO pgrelay.pgrelay_n '
            || 'USING pgrelay.pgrelay_sch, pgrelay.pgrelay_rel, pgrelay.pgrelay_keys;' || E'\n'
            || 'END;';
    END IF;
    body := E'#variable_conflict use_column\n<<pgrelay>>\nDECLARE\n'
        || E'    pgrelay_sch text;\n    pgrelay_rel text;\n    pgrelay_keys text[];\n    pgrelay_excl text[];\n    pgrelay_ign text[];\n    pgrelay_n bigint;\n    pgrelay_saved text[];\n'
        || E'BEGIN\n' || capture || E'\n'
        -- As in cdc.capture(): notify only when a relay waits for it, after
        -- the outbox rows are written.
        || 'IF pgrelay.pgrelay_n > 0 AND pg_sequence_last_value(''cdc.relay_wake_enter'') > pg_sequence_last_value(''cdc.relay_wake_leave'') THEN'
        || E'\n    PERFORM pg_notify(''{{.NotifyChannel}}'', pg_current_xact_id()::text);\nEND IF;\n'
        || E'IF pgrelay.pgrelay_saved IS NOT NULL THEN\n    PERFORM cdc.capture_unpin(pgrelay.pgrelay_saved);\nEND IF;\n'
        || E'RETURN NULL;\nEND';
    RETURN format($sql$CREATE OR REPLACE FUNCTION cdc.%I() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS %L$sql$, fname, body);
END
$fn$;

-- cdc.lock_capture_functions makes the caller's transaction the only one
-- changing capture triggers and the functions made for options until it
-- ends. Without it, two ensure-cdc runs at once that make the same new
-- function had one of them fail (a duplicate pg_proc row, or "tuple
-- concurrently updated"), and one could drop a function the other was
-- about to point a trigger at.
CREATE OR REPLACE FUNCTION cdc.lock_capture_functions() RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT pg_advisory_xact_lock({{.CaptureFunctionsLockKey}})
$fn$;

-- cdc.drop_unused_capture_functions drops the functions made for options
-- that no trigger calls any more. One that a concurrent transaction has
-- just started to use is left.
CREATE OR REPLACE FUNCTION cdc.drop_unused_capture_functions() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = 'cdc'::regnamespace AND p.proname <> 'capture' AND cdc.is_capture_function(p.oid)
          AND NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgfoid = p.oid)
    LOOP
        BEGIN
            EXECUTE format('DROP FUNCTION %s', fn);
        EXCEPTION WHEN dependent_objects_still_exist THEN
            NULL;
        END;
    END LOOP;
END
$fn$;

-- cdc.refresh_capture_functions remakes every function made for options
-- from the code installed now, points every capture trigger with options
-- at its function (triggers installed by an older version called
-- cdc.capture() with the options as arguments), and gives those with a
-- row filter the gates they may have, or takes them away (see
-- 18_gate.sql). Run by every Migrate that installs new code, in its
-- transaction.
CREATE OR REPLACE FUNCTION cdc.refresh_capture_functions() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    t     record;
    fname text;
    made  text[] := '{}';
    gate  text[];
    op    text;
    -- The last filter checked, of which table, and whether it was refused:
    -- a table's triggers have the same arguments when pgrelay made them.
    seen_rel    regclass;
    seen_filter text;
    refused     boolean;
BEGIN
    PERFORM cdc.lock_capture_functions();
    FOR t IN
        SELECT tg.tgrelid::regclass AS rel, substr(tg.tgname, 13) AS act, tg.tgfoid, cdc.trigger_args(tg.tgargs) AS args
        FROM pg_trigger tg
        WHERE tg.tgname LIKE 'cdc\_capture\_%' AND cdc.is_capture_function(tg.tgfoid)
        ORDER BY tg.tgrelid, tg.tgname
    LOOP
        fname := cdc.capture_function_name(t.args, t.act);
        IF fname = 'capture' THEN
            CONTINUE;
        END IF;
        -- The arguments are whatever each trigger's creator wrote: a
        -- filter becomes code of a function that runs as cdc's owner, so
        -- each is checked first, as ensure-cdc checks one.
        IF seen_rel IS DISTINCT FROM t.rel OR seen_filter IS DISTINCT FROM t.args[4] THEN
            seen_rel := t.rel;
            seen_filter := t.args[4];
            refused := false;
            BEGIN
                IF t.args[4] <> '' THEN
                    PERFORM cdc.check_row_filter(t.rel, t.args[4]);
                END IF;
            EXCEPTION WHEN OTHERS THEN
                refused := true;
                RAISE WARNING 'pgrelay: % keeps its capture triggers as they are: their row filter is refused (%); run relay ensure-cdc for it',
                    t.rel, SQLERRM;
            END;
            gate := CASE WHEN NOT refused AND t.args[1] = '' THEN cdc.gate_conditions(t.rel, t.args[4]) END;
        END IF;
        IF refused THEN
            CONTINUE;
        END IF;
        IF fname <> ALL (made) THEN
            EXECUTE cdc.capture_function_sql(t.args);
            made := made || fname;
        END IF;
        IF t.tgfoid <> format('cdc.%I()', fname)::regprocedure OR NOT cdc.capture_gated(t.rel, t.act, gate) THEN
            -- Installed by a table owner who did not migrate: cdc.capture()
            -- still captures it, with its column options, unfiltered.
            BEGIN
                FOREACH op IN ARRAY cdc.capture_trigger_ops(t.rel, t.act, fname, t.args, gate) LOOP
                    EXECUTE op;
                END LOOP;
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE WARNING 'pgrelay: % is captured by cdc.capture(), with its column options but without its row filter; run relay ensure-cdc for it with the same options, as a member of both its owner and the role that migrated (or as superuser), for its own capture function (%)',
                    t.rel, SQLERRM;
            END;
        END IF;
    END LOOP;
    PERFORM cdc.drop_unused_capture_functions();
END
$fn$;
