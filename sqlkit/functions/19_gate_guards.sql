-- What keeps row-filter gates (18_gate.sql) true to their capture
-- triggers as tables change: the event triggers' functions (migration 12
-- installs the event triggers), and the rewriting of a filter from its
-- gates after a column it uses was renamed. Installed by every Migrate
-- (see functions.go).

-- cdc.gate_printed returns expr, a gate's WHEN over the row alias (new or
-- old) ending with cdc.gate_mark_term(tbl), without that term, as
-- PostgreSQL prints it over tbl's columns; NULL if it cannot. It is printed
-- as a CHECK constraint of an empty temporary table named as the alias, in
-- a block that is always rolled back. Two filters printed so are the same
-- filter where their texts are equal.
CREATE OR REPLACE FUNCTION cdc.gate_printed(tbl regclass, alias text, expr text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    -- cdc.gate_mark_term(tbl), as PostgreSQL prints it.
    mark constant text := format(' AND (set_config(%L::text, ''y''::text, true) IS NULL))', cdc.gate_mark(tbl));
    out  text;
BEGIN
    BEGIN
        EXECUTE format('CREATE TEMPORARY TABLE %I (LIKE %s)', alias, tbl);
        EXECUTE format('ALTER TABLE pg_temp.%I ADD CONSTRAINT row_filter CHECK (%s)', alias, expr);
        SELECT pg_get_expr(c.conbin, c.conrelid) INTO out
        FROM pg_constraint c
        WHERE c.conrelid = format('pg_temp.%I', alias)::regclass AND c.conname = 'row_filter';
        RAISE EXCEPTION USING ERRCODE = 'PR100'; -- undo everything above
    EXCEPTION
        WHEN SQLSTATE 'PR100' THEN
            NULL;
        WHEN OTHERS THEN
            out := NULL;
    END;
    IF out IS NULL OR left(out, 1) <> '(' OR right(out, length(mark)) <> mark THEN
        RETURN NULL;
    END IF;
    RETURN substr(out, 2, length(out) - 1 - length(mark));
END
$fn$;

-- cdc.gate_filter returns tbl's row filter as its insert or delete gate has
-- it now, as cdc.gate_printed prints it: a gate's WHEN keeps its columns
-- by number, so that it follows renames, while the filter the capture
-- function and cdc.cdc_tables() have is text. NULL where tbl has no such
-- gate (an update-only table's gate has the filter twice) or its WHEN
-- cannot be read back.
CREATE OR REPLACE FUNCTION cdc.gate_filter(tbl regclass) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    gate  oid;
    alias text;
BEGIN
    SELECT t.oid, CASE t.tgname WHEN 'cdc_gate_insert' THEN 'new' ELSE 'old' END INTO gate, alias
    FROM pg_trigger t
    WHERE t.tgrelid = tbl AND t.tgname IN ('cdc_gate_insert', 'cdc_gate_delete')
    ORDER BY t.tgname DESC
    LIMIT 1;
    -- Only a gate as pgrelay makes them: calling cdc.capture_gate(), with
    -- built-in functions and operators only, and no domain (whose checks
    -- may call anybody's functions). Another (a table's
    -- owner may replace a trigger of that name) is not read back, since
    -- reading it back plans its expression, which would run a function
    -- of constants in it as the role that altered the table.
    IF NOT FOUND
       OR (SELECT t.tgfoid FROM pg_trigger t WHERE t.oid = gate) <> 'cdc.capture_gate()'::regprocedure
       OR EXISTS (SELECT FROM pg_depend d
                  WHERE d.classid = 'pg_trigger'::regclass AND d.objid = gate
                    AND d.refobjid >= 16384
                    AND (d.refclassid IN ('pg_proc'::regclass, 'pg_operator'::regclass)
                         AND d.refobjid <> 'cdc.capture_gate()'::regprocedure
                         OR d.refclassid = 'pg_type'::regclass
                            AND EXISTS (SELECT FROM pg_type ty WHERE ty.oid = d.refobjid AND ty.typtype = 'd'))) THEN
        RETURN NULL;
    END IF;
    RETURN cdc.gate_printed(tbl, alias,
        (regexp_match(pg_get_triggerdef(gate), ' FOR EACH ROW WHEN \((.*)\) EXECUTE FUNCTION cdc\.capture_gate\(\)$'))[1]);
END
$fn$;

-- cdc.follow_row_filter makes tbl's row filter what its gate has now
-- (cdc.gate_filter), after a column the filter uses was renamed: capture
-- goes on with the options it had, the filter naming the new name (as
-- relay ensure-cdc with it would), instead of capturing unfiltered the
-- statements whose rows the gate let through. A role that may not set
-- capture options gets a warning instead, and the write path stays as it
-- was.
CREATE OR REPLACE FUNCTION cdc.follow_row_filter(tbl regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    o   record;
    followed text;
BEGIN
    SELECT t.actions, t.ignore_columns, t.exclude_columns, t.row_filter INTO o
    FROM cdc.cdc_tables() t WHERE t.tbl = follow_row_filter.tbl;
    IF NOT FOUND OR o.row_filter IS NULL THEN
        RETURN;
    END IF;
    followed := cdc.gate_filter(tbl);
    IF followed IS NULL THEN
        RETURN;
    END IF;
    -- The filter the triggers have is compared as the gate prints it
    -- (PostgreSQL prints some otherwise once read back: a BETWEEN's AND
    -- merged with the others), once it is known to be a filter at all: it
    -- is the triggers' argument, which their creator wrote, and printing it
    -- plans it (see cdc.check_row_filter). One that no longer fits (its
    -- column renamed) is followed.
    BEGIN
        PERFORM cdc.check_row_filter(tbl, o.row_filter);
        IF followed = cdc.gate_printed(tbl, 'new', format('(%s) AND %s', o.row_filter, cdc.gate_mark_term(tbl))) THEN
            RETURN;
        END IF;
    EXCEPTION WHEN SQLSTATE 'PR003' THEN
        NULL;
    END;
    -- ensure_cdc_for checks and prints the followed filter as any other.
    BEGIN
        PERFORM cdc.ensure_cdc_for(tbl, o.actions, o.ignore_columns, o.exclude_columns, followed);
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'pgrelay: table %: its row filter % names a renamed column, and could not follow it (%): run relay ensure-cdc for it with --where %',
            tbl, o.row_filter, SQLERRM, quote_literal(followed);
    END;
END
$fn$;

-- cdc.gate_guard_drop, run after every DROP (event trigger
-- cdc_gate_guard_drop), refuses one that drops a gate trigger and leaves
-- the capture trigger that waits for it (see the header): a DROP COLUMN
-- ... CASCADE of a column the row filter uses, or a DROP TRIGGER.
CREATE OR REPLACE FUNCTION cdc.gate_guard_drop() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    names text[];
    rel   regclass;
BEGIN
    FOR names IN
        SELECT d.address_names FROM pg_event_trigger_dropped_objects() d
        WHERE d.object_type = 'trigger' AND d.address_names[3] LIKE 'cdc\_gate\_%'
    LOOP
        rel := to_regclass(format('%I.%I', names[1], names[2]));
        IF rel IS NOT NULL AND EXISTS (SELECT FROM pg_trigger t
                                       WHERE t.tgrelid = rel AND t.tgname = 'cdc_capture_' || substr(names[3], 10)
                                         AND t.tgqual IS NOT NULL) THEN
            RAISE EXCEPTION 'table %: this would drop trigger %, without which CDC with its row filter would miss every change: first run relay ensure-cdc % with a --where that does not use the columns changed here, or without --where',
                rel, names[3], rel USING ERRCODE = 'PR004';
        END IF;
    END LOOP;
END
$fn$;

-- cdc.gate_guard_ddl, run after every CREATE TABLE and ALTER TABLE (event
-- trigger cdc_gate_guard_ddl), refuses one that gives a gated table an
-- inheritance child, whose rows the gates would not see, or that enables
-- or disables a gate otherwise than its capture trigger (as ENABLE ALWAYS
-- TRIGGER, for capture on a logical replica, must do for both); then has
-- the row filters of the gated tables it changed follow renamed columns
-- (cdc.follow_row_filter). It looks only at the tables the command made
-- or changed (a new child is the command's table, its parent is not), so
-- that DDL elsewhere costs one catalog lookup.
CREATE OR REPLACE FUNCTION cdc.gate_guard_ddl() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    touched oid[] := ARRAY(SELECT DISTINCT c.objid FROM pg_event_trigger_ddl_commands() c
                           WHERE c.classid = 'pg_class'::regclass);
    rel   regclass;
    other regclass;
    trig  text;
BEGIN
    SELECT i.inhparent::regclass, i.inhrelid::regclass INTO rel, other
    FROM pg_inherits i
    WHERE (i.inhrelid = ANY (touched) OR i.inhparent = ANY (touched))
      AND EXISTS (SELECT FROM pg_trigger t
                  WHERE t.tgrelid = i.inhparent AND t.tgname LIKE 'cdc\_capture\_%' AND t.tgqual IS NOT NULL)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'table %: CDC with its row filter would miss the changes of inheritance child %: first run relay ensure-cdc % without --where, then again with it',
            rel, other, rel USING ERRCODE = 'PR004';
    END IF;
    SELECT c.tgrelid::regclass, g.tgname INTO rel, trig
    FROM pg_trigger c
    JOIN pg_trigger g ON g.tgrelid = c.tgrelid AND g.tgname = 'cdc_gate_' || substr(c.tgname, 13)
    WHERE c.tgrelid = ANY (touched)
      AND c.tgname LIKE 'cdc\_capture\_%' AND c.tgqual IS NOT NULL AND c.tgenabled <> g.tgenabled
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'table %: trigger % must be enabled or disabled as trigger % is (in the same ALTER TABLE), or CDC with its row filter would miss changes',
            rel, trig, 'cdc_capture_' || substr(trig, 10) USING ERRCODE = 'PR004';
    END IF;
    -- Read back only from gates pgrelay made (see cdc.gate_filter), and by
    -- a role that may use cdc at all (an application role may ALTER its
    -- tables).
    FOR rel IN
        SELECT t.tgrelid::regclass FROM pg_trigger t
        WHERE t.tgrelid = ANY (touched) AND t.tgname IN ('cdc_gate_insert', 'cdc_gate_delete')
          AND has_schema_privilege('cdc', 'USAGE')
        GROUP BY t.tgrelid
    LOOP
        BEGIN
            PERFORM cdc.follow_row_filter(rel);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'pgrelay: table %: its row filter could not follow this change (%): run relay ensure-cdc for it with a --where that fits',
                rel, SQLERRM;
        END;
    END LOOP;
END
$fn$;
