-- The functions that install, remove and list capture triggers. Installed by
-- every Migrate (see functions.go).

-- cdc.all_tables lists the tables CDC can be enabled on in the given schemas:
-- ordinary and partitioned tables (a partitioned table's CDC covers all its
-- partitions, so partitions themselves are left out), never views, foreign
-- tables, temporary tables or cdc's own tables.
CREATE OR REPLACE FUNCTION cdc.all_tables(schemas text[] DEFAULT ARRAY['public'])
RETURNS SETOF regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT c.oid::regclass
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY (schemas)
      AND n.nspname <> 'cdc'
      AND c.relkind IN ('r', 'p')
      AND NOT c.relispartition
      AND c.relpersistence <> 't'
    ORDER BY n.nspname, c.relname
$fn$;

-- cdc.check_cdc_target raises a clear error when tbl cannot carry CDC. The
-- SQLSTATEs in class PR are pgrelay's own, so that callers can tell the
-- reasons apart without parsing messages.
CREATE OR REPLACE FUNCTION cdc.check_cdc_target(tbl regclass) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    rel record;
BEGIN
    SELECT c.relkind, c.relpersistence, c.relispartition, n.nspname,
           (SELECT p.inhparent::regclass FROM pg_inherits p WHERE p.inhrelid = c.oid LIMIT 1) AS parent
    INTO rel
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = tbl;

    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % does not exist', tbl USING ERRCODE = 'undefined_table';
    END IF;
    IF rel.nspname = 'cdc' THEN
        RAISE EXCEPTION '% belongs to pgrelay itself and cannot be captured', tbl
            USING ERRCODE = 'PR002';
    END IF;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is a %, not a table: CDC captures tables only', tbl,
            CASE rel.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                             WHEN 'f' THEN 'foreign table' WHEN 'S' THEN 'sequence'
                             WHEN 'c' THEN 'composite type' WHEN 'i' THEN 'index'
                             ELSE 'relation of kind ' || rel.relkind::text END
            USING ERRCODE = 'PR002';
    END IF;
    IF rel.relpersistence = 't' THEN
        RAISE EXCEPTION '% is a temporary table: its changes are private to one session and cannot be captured', tbl
            USING ERRCODE = 'PR002';
    END IF;
    IF rel.relispartition THEN
        RAISE EXCEPTION '% is a partition of %: enable CDC on the partitioned table, which covers all its partitions',
            tbl, rel.parent
            USING ERRCODE = 'PR002';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = tbl AND i.indisprimary) THEN
        RAISE EXCEPTION 'table % has no primary key: CDC events are keyed by the primary key, add one and retry', tbl
            USING ERRCODE = 'PR001';
    END IF;
END
$fn$;

-- cdc.capture_targets lists tbl and, for a partitioned table, all its
-- partitions at every level: the relations that carry its triggers.
CREATE OR REPLACE FUNCTION cdc.capture_targets(tbl regclass)
RETURNS TABLE (relid regclass)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT tbl
    UNION
    SELECT t.relid FROM pg_partition_tree(tbl) t
$fn$;

-- cdc.ensure_cdc_for installs the capture triggers on tbl with the given
-- options and returns 'installed' (there were none), 'updated' (they had
-- other options) or 'unchanged'. Options left out take their defaults, so
-- running it again sets exactly the options given:
--
--   actions          which of insert, update, delete, truncate are captured
--                    (default all)
--   ignore_columns   an UPDATE that changes only these emits nothing; they
--                    are left out of the others' "changes", not of "data"
--   exclude_columns  never written to the outbox (not in data, changes or
--                    keys); primary-key columns cannot be excluded
--   row_filter       an SQL boolean expression over tbl's columns; rows it
--                    does not hold for are not captured, and an UPDATE that
--                    moves a row into it is an insert, out of it a delete,
--                    as PostgreSQL's publication row filters
--
-- Everything is checked before any trigger changes, and the change is one
-- CREATE OR REPLACE TRIGGER per action (DROP for an action no longer
-- captured), after the capture function for the options, if any, is made
-- (see 17_capture_with.sql), in the caller's transaction: every statement
-- is captured under the old options or the new ones, never twice or not at all. When nothing
-- would change, it takes no lock on the table. Concurrent calls (and
-- cdc.remove_cdc_for, and Migrate's refresh) take turns, each until its
-- transaction ends (cdc.lock_capture_functions).
CREATE OR REPLACE FUNCTION cdc.ensure_cdc_for(tbl regclass, actions text[] DEFAULT NULL,
                                               ignore_columns text[] DEFAULT NULL,
                                               exclude_columns text[] DEFAULT NULL,
                                               row_filter text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    all_actions constant text[] := ARRAY['insert', 'update', 'delete', 'truncate'];
    acts    text[];
    ign     text[];
    excl    text[];
    filter  text := coalesce(btrim(row_filter), '');
    bad     text;
    part    regclass;
    act     text;
    args    text[];
    old     record;
    fname   text;
    made    text[] := '{}';
    cdc_owner name := (SELECT p.proowner::regrole::name FROM pg_proc p WHERE p.oid = 'cdc.capture()'::regprocedure);
    found_any boolean := false;
    ops     text[] := '{}';
    gate    text[];
    g       text[];
BEGIN
    PERFORM cdc.check_cdc_target(tbl);

    SELECT a INTO bad FROM unnest(actions) a WHERE lower(btrim(a)) <> ALL (all_actions) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'table %: unknown action % (the actions are insert, update, delete, truncate)', tbl, quote_literal(bad)
            USING ERRCODE = 'PR003';
    END IF;
    acts := CASE WHEN actions IS NULL THEN all_actions
                 ELSE ARRAY(SELECT x FROM unnest(all_actions) x WHERE x IN (SELECT lower(btrim(a)) FROM unnest(actions) a)) END;
    IF cardinality(acts) = 0 THEN
        RAISE EXCEPTION 'table %: no action to capture (give at least one of insert, update, delete, truncate, or remove CDC)', tbl
            USING ERRCODE = 'PR003';
    END IF;
    ign := cdc.capture_columns(tbl, coalesce(ignore_columns, '{}'), 'ignore_columns');
    excl := cdc.capture_columns(tbl, coalesce(exclude_columns, '{}'), 'exclude_columns');
    SELECT a.attname INTO bad
    FROM pg_index i
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
    WHERE i.indrelid = tbl AND i.indisprimary AND a.attname = ANY (excl)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'table %: column % is part of the primary key, which keys every event, and cannot be excluded', tbl, quote_ident(bad)
            USING ERRCODE = 'PR003';
    END IF;
    IF filter <> '' THEN
        filter := cdc.check_row_filter(tbl, filter);
        gate := cdc.gate_conditions(tbl, filter);
    END IF;

    -- One ensure or remove at a time decides and makes its changes.
    PERFORM cdc.lock_capture_functions();

    -- A partitioned table's partitions get the triggers too, so that
    -- statements addressed to a partition directly are captured as well.
    -- Partitions created later need ensure_cdc_for to be run again.
    -- First work out what would change, then change it.
    FOR part IN SELECT ct.relid FROM cdc.capture_targets(tbl) ct LOOP
        args := cdc.capture_args(tbl, part, ign, excl, filter);
        g := CASE WHEN part = tbl THEN gate END;
        FOREACH act IN ARRAY all_actions LOOP
            fname := cdc.capture_function_name(args, act);
            SELECT t.tgfoid = coalesce(to_regprocedure(format('cdc.%I()', fname)), 0) AS ours,
                   cdc.trigger_args(t.tgargs) AS targs INTO old
            FROM pg_trigger t WHERE t.tgrelid = part AND t.tgname = 'cdc_capture_' || act;
            IF FOUND THEN
                found_any := true;
            END IF;
            IF act = ANY (acts) THEN
                IF NOT FOUND OR NOT old.ours OR old.targs IS DISTINCT FROM args OR NOT cdc.capture_gated(part, act, g) THEN
                    IF fname <> 'capture' AND fname <> ALL (made) THEN
                        -- Owned, as cdc.capture() is, by the role that
                        -- migrated: it writes the outbox with that role's
                        -- rights (SECURITY DEFINER), which the caller may
                        -- lack.
                        IF NOT pg_has_role(cdc_owner, 'USAGE') THEN
                            RAISE EXCEPTION 'table %: capture options need the role that ran relay migrate (%), or one of its members: ensure-cdc makes a capture function owned by it',
                                tbl, cdc_owner USING ERRCODE = 'insufficient_privilege';
                        END IF;
                        ops := ops || cdc.capture_function_sql(args)
                                   || format('ALTER FUNCTION cdc.%I() OWNER TO %I', fname, cdc_owner);
                        made := made || fname;
                    END IF;
                    ops := ops || cdc.capture_trigger_ops(part, act, fname, args, g);
                END IF;
            ELSIF FOUND THEN
                ops := ops || format('DROP TRIGGER %I ON %s', 'cdc_capture_' || act, part)
                           || cdc.gate_drop_ops(part, act);
            END IF;
        END LOOP;
    END LOOP;
    IF cardinality(ops) = 0 THEN
        RETURN 'unchanged';
    END IF;
    FOR i IN 1 .. cardinality(ops) LOOP
        EXECUTE ops[i];
    END LOOP;
    PERFORM cdc.drop_unused_capture_functions();
    RETURN CASE WHEN found_any THEN 'updated' ELSE 'installed' END;
END
$fn$;

-- cdc.remove_cdc_for removes the capture triggers (and gates) from tbl and returns
-- 'removed', or 'unchanged' when there were none. Events already in the
-- outbox are still delivered.
CREATE OR REPLACE FUNCTION cdc.remove_cdc_for(tbl regclass) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    trig text;
    part regclass;
    found_any boolean := false;
BEGIN
    PERFORM cdc.lock_capture_functions();
    FOR trig, part IN
        SELECT t.tgname, t.tgrelid::regclass FROM pg_trigger t
        WHERE t.tgrelid IN (SELECT ct.relid FROM cdc.capture_targets(tbl) ct)
          AND t.tgname IN ('cdc_capture_insert', 'cdc_capture_update',
                           'cdc_capture_delete', 'cdc_capture_truncate',
                           'cdc_gate_insert', 'cdc_gate_update', 'cdc_gate_delete')
        -- Each capture trigger before its gate (see 18_gate.sql).
        ORDER BY t.tgname LIKE 'cdc\_gate\_%'
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trig, part);
        found_any := true;
    END LOOP;
    IF found_any THEN
        PERFORM cdc.drop_unused_capture_functions();
    END IF;
    RETURN CASE WHEN found_any THEN 'removed' ELSE 'unchanged' END;
END
$fn$;

-- cdc.cdc_tables lists the tables that currently have CDC installed, with
-- their capture options (see cdc.ensure_cdc_for): the actions captured,
-- the ignored and excluded columns (empty for none) and the row filter
-- (NULL for none).
CREATE OR REPLACE FUNCTION cdc.cdc_tables()
RETURNS TABLE (tbl regclass, actions text[], ignore_columns text[], exclude_columns text[], row_filter text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT s.tbl, s.actions,
           CASE WHEN cardinality(s.args) >= 4 THEN
               (SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}') FROM pg_attribute a
                WHERE a.attrelid = s.tbl AND a.attnum = ANY (s.args[3]::int2[]) AND NOT a.attisdropped)
           ELSE '{}' END,
           CASE WHEN cardinality(s.args) >= 4 THEN
               (SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}') FROM pg_attribute a
                WHERE a.attrelid = s.tbl AND a.attnum = ANY (s.args[2]::int2[]) AND NOT a.attisdropped)
           ELSE '{}' END,
           CASE WHEN cardinality(s.args) >= 4 THEN nullif(s.args[4], '') END
    FROM (SELECT t.tgrelid::regclass AS tbl,
                 array_agg(substr(t.tgname, 13) ORDER BY array_position(ARRAY['insert', 'update', 'delete', 'truncate'], substr(t.tgname, 13))) AS actions,
                 cdc.trigger_args((array_agg(t.tgargs))[1]) AS args -- the same on each of a table's triggers
          FROM pg_trigger t
          JOIN pg_class c ON c.oid = t.tgrelid
          WHERE cdc.is_capture_function(t.tgfoid)
            AND t.tgname LIKE 'cdc\_capture\_%'
            AND NOT c.relispartition
          GROUP BY t.tgrelid) s
    ORDER BY s.tbl::text
$fn$;
