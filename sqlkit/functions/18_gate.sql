-- Row-filter gates. Installed by every Migrate (see functions.go).
--
-- A statement-level trigger runs its function for every statement, so a
-- row filter checked inside the capture function costs a statement whose
-- rows it rejects a function call, a search_path pin and a query on the
-- transition table: more than the call alone (BENCHMARKS.md, "Write
-- overhead of a row filter that rejects every row"). Where it is safe, a
-- table with a row filter therefore also gets a gate per action: a row
-- trigger whose WHEN clause evaluates the filter on the changed row and,
-- only where it holds, marks the transaction (the setting
-- cdc.pass_<table oid>, local to it). Its WHEN is never true, so the gate
-- never calls its function, and the capture trigger's own WHEN lets it run
-- only once the mark is set. A statement whose every row the filter
-- rejects then costs the filter's evaluation per row, and nothing else.
--
-- The mark stays set until the transaction ends: resetting it after a
-- capture could erase the mark of another statement on the same table
-- that is still running (one run from a function or a trigger in the
-- middle of it). A later statement of the same transaction then takes the
-- capture function's own filter, which is correct, only slower. A writer
-- that sets cdc.pass_<oid> itself in the middle of a statement can hide
-- its own changes, as one that sets the key cache (cdc.keys_<oid>, see
-- cdc.capture_context) can mislabel them: pgrelay-internal settings are
-- trusted, as the application's own writes are.
--
-- Gates exist only where nothing can change a table's rows without its
-- gate seeing them:
--   * plain tables only: a partitioned table's statements fire its own
--     statement triggers for rows the gates on its partitions would see;
--   * without inheritance children, whose rows a parent's transition
--     tables hold but its row triggers never see; cdc.gate_guard_ddl
--     refuses to give a gated table one, and to enable or disable a gate
--     otherwise than its capture trigger;
--   * with the guards installed (migration 12, which needs superuser):
--     the gate's WHEN depends on the filter's columns, so that, as with
--     PostgreSQL's publication row filters, they cannot be dropped or
--     changed in type while the filter uses them, except by DROP ...
--     CASCADE, which would drop the gate and leave its capture trigger
--     waiting for a mark nothing sets: cdc.gate_guard_drop refuses that;
--   * with a filter that cannot fail (cdc.gate_conditions): the gate
--     evaluates the filter inside the application's statement, where an
--     error (a division by zero, an overflow) would fail the write, which
--     the capture function instead catches, capturing the rows
--     unfiltered;
--   * where every role may call set_config and current_setting, which
--     the WHEN clauses call as the writer.
-- Elsewhere the capture function checks the filter alone, as before.
--
-- Since the gates keep the filter's columns by number, they follow a
-- renamed column; cdc.gate_guard_ddl then rewrites the filter the capture
-- function has (text) from them (cdc.follow_row_filter), so that the
-- filter follows renames as a publication's does. The guards and that
-- rewriting are in 19_gate_guards.sql.

-- cdc.capture_gate is the function gate triggers name. It never runs,
-- since their WHEN clause is never true.
CREATE OR REPLACE FUNCTION cdc.capture_gate() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN NULL;
END
$fn$;

-- cdc.gate_safe tells whether a boolean expression, as PostgreSQL stores
-- it (tree: pg_node_tree as text), can never raise an error, whatever the
-- row: it is made only of columns, constants, AND, OR, NOT, IS [NOT] NULL,
-- IS [NOT] TRUE and the like, IN lists, and the comparison operators of
-- built-in B-tree operator classes (and their negators, <>), which compare
-- any two values of their types. Functions of constants only are allowed
-- too, since cdc.gate_conditions evaluates them once. Anything else, such
-- as arithmetic on columns, could fail for some row.
CREATE OR REPLACE FUNCTION cdc.gate_safe(tree text) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT NOT EXISTS (
               SELECT FROM regexp_matches(
                   regexp_replace(tree, '\{FUNCEXPR [^{}]*:args \((\{CONST [^{}]*\}\s*)+\)[^{}]*\}', '{CONST :folded}', 'g'),
                   '\{([A-Z_]+)', 'g') m
               WHERE m[1] <> ALL (ARRAY['OPEXPR', 'DISTINCTEXPR', 'SCALARARRAYOPEXPR', 'BOOLEXPR', 'NULLTEST',
                                        'BOOLEANTEST', 'VAR', 'CONST', 'RELABELTYPE', 'COLLATEEXPR', 'ARRAYEXPR']))
       AND NOT EXISTS (
               SELECT FROM regexp_matches(tree, ':opfuncid (\d+)', 'g') f
               WHERE NOT EXISTS (
                   SELECT FROM pg_operator o
                   WHERE o.oprcode = f[1]::oid AND o.oid < 16384
                     AND o.oprleft <> 'record'::regtype AND o.oprright <> 'record'::regtype
                     AND EXISTS (SELECT FROM pg_amop a
                                 WHERE a.amopmethod = (SELECT am.oid FROM pg_am am WHERE am.amname = 'btree')
                                   AND (a.amopopr = o.oid
                                        OR a.amopopr = o.oprnegate AND a.amopstrategy = 3))))
$fn$;

-- cdc.gate_conditions returns row filter filter of tbl (as
-- cdc.check_row_filter printed it) as the WHEN clause of a gate trigger
-- needs it, with its columns those of the changed row: {on NEW, on OLD}.
-- It returns NULL where no gate may be installed: the filter could fail
-- (cdc.gate_safe), or tbl is not a plain table without inheritance
-- children, or the guards are not installed (see the header), or not
-- every role may call the functions the WHEN clauses call. As
-- cdc.check_row_filter, it works on an empty temporary copy of tbl's
-- columns, in a block that is always rolled back; PostgreSQL prints the
-- filter over that copy, aliased new or old, back.
CREATE OR REPLACE FUNCTION cdc.gate_conditions(tbl regclass, filter text) RETURNS text[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    copy  constant text := 'pgrelay_gate_' || tbl::oid::text;
    tree  text;
    alias text;
    def   text;
    conds text[] := '{}';
BEGIN
    IF filter = ''
       OR NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = tbl AND c.relkind = 'r' AND NOT c.relispartition)
       OR EXISTS (SELECT FROM pg_inherits i WHERE i.inhparent = tbl)
       OR (SELECT count(*) FROM pg_event_trigger e
           WHERE e.evtname IN ('cdc_gate_guard_drop', 'cdc_gate_guard_ddl') AND e.evtenabled <> 'D') < 2
       -- The WHEN clauses call these as the writer, whatever role it is.
       OR NOT has_function_privilege('public', 'pg_catalog.set_config(text, text, boolean)', 'EXECUTE')
       OR NOT has_function_privilege('public', 'pg_catalog.current_setting(text, boolean)', 'EXECUTE') THEN
        RETURN NULL;
    END IF;
    BEGIN
        EXECUTE format('CREATE TEMPORARY TABLE %I (LIKE %s)', copy, tbl);
        EXECUTE format('ALTER TABLE pg_temp.%I ADD CONSTRAINT row_filter CHECK (%s)', copy, filter);
        SELECT c.conbin::text INTO tree
        FROM pg_constraint c
        WHERE c.conrelid = format('pg_temp.%I', copy)::regclass AND c.conname = 'row_filter';
        IF cdc.gate_safe(tree) THEN
            -- Once on a row of NULLs, for the functions of constants.
            EXECUTE format('SELECT (%s) FROM (SELECT (NULL::pg_temp.%I).*) x', filter, copy);
            -- PostgreSQL prints each column qualified, since the view
            -- has two relations, and renames an alias that one of its own
            -- names a view's relations with (new and old, in older
            -- versions) would clash with: the columns are printed as
            -- pgrelay_gate_row's and then renamed, where no constant of
            -- the filter has that name in it.
            IF strpos(filter, 'pgrelay_gate_row') = 0 THEN
                EXECUTE format('CREATE TEMPORARY VIEW %I AS SELECT FROM pg_temp.%I AS pgrelay_gate_row, (SELECT) AS pgrelay_pad WHERE %s',
                               copy || '_view', copy, filter);
                def := (regexp_match(pg_get_viewdef(format('pg_temp.%I', copy || '_view')::regclass),
                                     'pgrelay_pad\s+WHERE\s+(.*);\s*$'))[1];
                FOREACH alias IN ARRAY ARRAY['new', 'old'] LOOP
                    conds := conds || regexp_replace(def, '\mpgrelay_gate_row\.', alias || '.', 'g');
                END LOOP;
            ELSE
                conds := NULL;
            END IF;
        ELSE
            conds := NULL;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'PR100'; -- undo everything above
    EXCEPTION
        WHEN SQLSTATE 'PR100' THEN
            NULL;
        WHEN OTHERS THEN
            -- Checked by cdc.check_row_filter already: whatever fails here
            -- only means no gate.
            conds := NULL;
    END;
    IF cardinality(conds) <> 2 OR array_position(conds, NULL) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    RETURN conds;
END
$fn$;

-- cdc.gate_mark names the setting that marks a transaction in which a
-- row of rel passed its row filter (see the header), and
-- cdc.gate_mark_term is the term every gate's WHEN ends with, which sets
-- it and is never true.
CREATE OR REPLACE FUNCTION cdc.gate_mark(rel regclass) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT 'cdc.pass_' || rel::oid::text
$fn$;

CREATE OR REPLACE FUNCTION cdc.gate_mark_term(rel regclass) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT format('pg_catalog.set_config(%L, ''y'', true) IS NULL', cdc.gate_mark(rel))
$fn$;

-- cdc.capture_trigger_ops returns the statements that make rel's capture
-- trigger for action act call function fname with arguments args, gated
-- by gate (cdc.gate_conditions' result, or NULL for no gate): the gate
-- trigger first and the capture trigger with its WHEN, or the capture
-- trigger without and then no gate trigger left. The gate's WHEN marks the
-- transaction only where the filter holds: PostgreSQL evaluates the terms
-- of an AND in their order and stops at the first that is not true, and
-- a CASE, which would say so, made every statement cost more (its WHEN is
-- read back from its stored form for each statement, node by node).
CREATE OR REPLACE FUNCTION cdc.capture_trigger_ops(rel regclass, act text, fname text, args text[], gate text[])
RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    capture text := format('CREATE OR REPLACE TRIGGER %I AFTER %s ON %s %s FOR EACH STATEMENT %s EXECUTE FUNCTION cdc.%I(%s)',
        'cdc_capture_' || act, upper(act), rel,
        CASE act WHEN 'insert' THEN 'REFERENCING NEW TABLE AS new_rows'
                 WHEN 'update' THEN 'REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows'
                 WHEN 'delete' THEN 'REFERENCING OLD TABLE AS old_rows'
                 ELSE '' END,
        CASE WHEN gate IS NOT NULL AND act <> 'truncate' THEN
            format('WHEN (pg_catalog.current_setting(%L, true) OPERATOR(pg_catalog.=) ''y'')', cdc.gate_mark(rel))
        ELSE '' END,
        fname,
        (SELECT coalesce(string_agg(quote_literal(x), ', ' ORDER BY n), '') FROM unnest(args) WITH ORDINALITY AS u(x, n)));
BEGIN
    IF gate IS NULL OR act = 'truncate' THEN
        RETURN ARRAY[capture] || cdc.gate_drop_ops(rel, act);
    END IF;
    RETURN ARRAY[format('CREATE OR REPLACE TRIGGER %I AFTER %s ON %s FOR EACH ROW '
                        'WHEN ((%s) AND %s) '
                        'EXECUTE FUNCTION cdc.capture_gate()',
                        'cdc_gate_' || act, upper(act), rel,
                        CASE act WHEN 'insert' THEN '(' || gate[1] || ')'
                                 WHEN 'delete' THEN '(' || gate[2] || ')'
                                 ELSE '(' || gate[2] || ') OR (' || gate[1] || ')' END,
                        cdc.gate_mark_term(rel)),
                 capture];
END
$fn$;

-- cdc.gate_drop_ops returns the statement that drops rel's gate trigger
-- for act, if it has one, to run after its capture trigger has lost its
-- WHEN or was dropped.
CREATE OR REPLACE FUNCTION cdc.gate_drop_ops(rel regclass, act text) RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = rel AND t.tgname = 'cdc_gate_' || act)
                THEN ARRAY[format('DROP TRIGGER %I ON %s', 'cdc_gate_' || act, rel)] ELSE '{}' END
$fn$;

-- cdc.capture_gated tells whether rel's capture trigger for act has the
-- gate that gate (see cdc.capture_trigger_ops) asks for: a WHEN and a gate
-- trigger, or neither.
CREATE OR REPLACE FUNCTION cdc.capture_gated(rel regclass, act text, gate text[]) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT (gate IS NOT NULL AND act <> 'truncate')
           = coalesce((SELECT t.tgqual IS NOT NULL FROM pg_trigger t WHERE t.tgrelid = rel AND t.tgname = 'cdc_capture_' || act), false)
       AND (gate IS NOT NULL AND act <> 'truncate')
           = EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = rel AND t.tgname = 'cdc_gate_' || act)
$fn$;
