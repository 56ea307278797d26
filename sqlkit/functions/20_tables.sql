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

-- cdc.ensure_cdc_for installs the capture triggers on tbl and returns
-- 'installed', or 'unchanged' when they were already in place. When all four
-- triggers exist it does nothing and takes no lock on the table; otherwise
-- CREATE OR REPLACE TRIGGER installs the missing ones, so there is never a
-- moment without a trigger (no DROP then CREATE).
CREATE OR REPLACE FUNCTION cdc.ensure_cdc_for(tbl regclass) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    part   regclass;
    arg    text;
    tables int;
BEGIN
    PERFORM cdc.check_cdc_target(tbl);

    -- A partitioned table's partitions get the triggers too, so that
    -- statements addressed to a partition directly are captured as well.
    -- Partitions created later need ensure_cdc_for to be run again.
    SELECT count(*) INTO tables FROM cdc.capture_targets(tbl);
    IF (SELECT count(*) FROM pg_trigger t
        WHERE t.tgrelid IN (SELECT ct.relid FROM cdc.capture_targets(tbl) ct)
          AND t.tgfoid = 'cdc.capture()'::regprocedure
          AND t.tgname IN ('cdc_capture_insert', 'cdc_capture_update',
                           'cdc_capture_delete', 'cdc_capture_truncate')) = 4 * tables THEN
        RETURN 'unchanged';
    END IF;

    FOR part IN SELECT ct.relid FROM cdc.capture_targets(tbl) ct LOOP
        arg := CASE WHEN part = tbl THEN '' ELSE quote_literal('partition') END;
        EXECUTE format('CREATE OR REPLACE TRIGGER cdc_capture_insert AFTER INSERT ON %s '
                       'REFERENCING NEW TABLE AS new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION cdc.capture(%s)', part, arg);
        EXECUTE format('CREATE OR REPLACE TRIGGER cdc_capture_update AFTER UPDATE ON %s '
                       'REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION cdc.capture(%s)', part, arg);
        EXECUTE format('CREATE OR REPLACE TRIGGER cdc_capture_delete AFTER DELETE ON %s '
                       'REFERENCING OLD TABLE AS old_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION cdc.capture(%s)', part, arg);
        EXECUTE format('CREATE OR REPLACE TRIGGER cdc_capture_truncate AFTER TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION cdc.capture(%s)', part, arg);
    END LOOP;
    RETURN 'installed';
END
$fn$;

-- cdc.remove_cdc_for removes the capture triggers from tbl and returns
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
    FOR trig, part IN
        SELECT t.tgname, t.tgrelid::regclass FROM pg_trigger t
        WHERE t.tgrelid IN (SELECT ct.relid FROM cdc.capture_targets(tbl) ct)
          AND t.tgname IN ('cdc_capture_insert', 'cdc_capture_update',
                           'cdc_capture_delete', 'cdc_capture_truncate')
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trig, part);
        found_any := true;
    END LOOP;
    RETURN CASE WHEN found_any THEN 'removed' ELSE 'unchanged' END;
END
$fn$;

-- cdc.cdc_tables lists the tables that currently have CDC installed.
CREATE OR REPLACE FUNCTION cdc.cdc_tables() RETURNS SETOF regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT s.tbl
    FROM (SELECT DISTINCT t.tgrelid::regclass AS tbl
          FROM pg_trigger t
          JOIN pg_class c ON c.oid = t.tgrelid
          WHERE t.tgfoid = 'cdc.capture()'::regprocedure
            AND NOT c.relispartition) s
    ORDER BY s.tbl::text
$fn$;
