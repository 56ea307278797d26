-- History: what this migration installed then. The current functions are in
-- sqlkit/functions/, installed by every Migrate since migration 8.
--
-- Capture: the trigger function and the functions that install it.
-- Everything here is CREATE OR REPLACE so a later migration can re-install a
-- changed version of any function without touching the tables.

-- cdc.capture() is the one trigger function behind every captured table. It
-- runs once per statement (not per row) over the statement's transition
-- tables, so a 1,000-row INSERT costs one INSERT ... SELECT into the outbox,
-- and it sends at most one NOTIFY per transaction: the payload is the
-- transaction id, identical within a transaction, and PostgreSQL folds
-- identical notifications of one transaction into one. It sends none while
-- every relay is busy reading the outbox anyway.
--
-- SECURITY DEFINER with a pinned search_path: application roles need no
-- privilege on cdc.*, and a hostile search_path cannot substitute functions
-- or operators used here.
--
-- It never raises for the application's sake: if the table lost its primary
-- key after CDC was enabled, events are still written, with a NULL key.
CREATE OR REPLACE FUNCTION cdc.capture() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- The JSON must not depend on the writer's session settings.
SET TimeZone = 'UTC'
SET IntervalStyle = 'postgres'
SET bytea_output = 'hex'
SET extra_float_digits = 3
AS $fn$
DECLARE
    keys    text[];
    onekey  text;
    written bigint;
    sch     text := TG_TABLE_SCHEMA;
    rel     text := TG_TABLE_NAME;
    gen     bigint;
    cached  text;
BEGIN
    -- On a partition (installed with the argument 'partition'), the event
    -- is named after the partitioned table at the root, whose channel
    -- consumers listen on. Statements addressed to the partitioned table
    -- fire only its own triggers, so nothing is captured twice.
    IF TG_NARGS > 0 AND TG_ARGV[0] = 'partition' THEN
        SELECT n.nspname, c.relname INTO sch, rel
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = pg_partition_root(TG_RELID);
    END IF;

    IF TG_OP = 'TRUNCATE' THEN
        -- A partition truncated on its own is reported on the partitioned
        -- table with the partition's name in data. TRUNCATE of the
        -- partitioned table fires its own trigger first, then its
        -- partitions': they see its event as this transaction's latest and
        -- add nothing.
        IF TG_NARGS > 0 AND EXISTS (
            SELECT 1 FROM (
                SELECT o.action, o.data, o.schema_name, o.table_name FROM cdc.outbox o
                WHERE o.txid = pg_current_xact_id()
                ORDER BY o.txid DESC, o.id DESC LIMIT 1
            ) latest
            WHERE latest.action = 'truncate' AND latest.data IS NULL
              AND latest.schema_name = sch AND latest.table_name = rel
        ) THEN
            RETURN NULL;
        END IF;
        INSERT INTO cdc.outbox (schema_name, table_name, action, data)
        VALUES (sch, rel, 'truncate',
                CASE WHEN TG_NARGS > 0 THEN
                    jsonb_build_object('partition', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME)
                END);
        IF pg_sequence_last_value('cdc.relay_wake_enter') > pg_sequence_last_value('cdc.relay_wake_leave') THEN
            PERFORM pg_notify('cdc_events', pg_current_xact_id()::text);
        END IF;
        RETURN NULL;
    END IF;

    -- Primary-key columns. The catalog lookup costs more than the rest of a
    -- one-row statement's capture, so its result is kept for the session
    -- in the setting cdc.keys_<table oid>, tagged with the DDL generation:
    -- the event trigger cdc.ddl_changed (installed when migrations ran as
    -- superuser) bumps cdc.ddl_generation on every ALTER TABLE, so renamed
    -- or replaced key columns are looked up again. Without the event
    -- trigger, nothing is cached.
    gen := CASE WHEN to_regclass('cdc.ddl_generation') IS NOT NULL
                THEN pg_sequence_last_value('cdc.ddl_generation') END;
    IF gen IS NOT NULL THEN
        cached := current_setting('cdc.keys_' || TG_RELID::oid::text, true);
        IF cached LIKE gen::text || ':%' THEN
            keys := substr(cached, length(gen::text) + 2)::text[];
        END IF;
    END IF;
    IF keys IS NULL THEN
        SELECT array_agg(a.attname::text ORDER BY k.pos) INTO keys
        FROM pg_index i
        CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, pos)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = TG_RELID AND i.indisprimary AND k.pos <= i.indnkeyatts;
        IF gen IS NOT NULL AND keys IS NOT NULL THEN
            PERFORM set_config('cdc.keys_' || TG_RELID::oid::text, gen::text || ':' || keys::text, false);
        END IF;
    END IF;
    IF cardinality(keys) = 1 THEN
        onekey := keys[1];
    END IF;

    -- "OFFSET 0" keeps each row's to_jsonb() in its subquery: without it
    -- the planner inlines the subquery and computes to_jsonb() once per
    -- reference, which nearly doubled the cost of a bulk insert.
    IF TG_OP = 'INSERT' THEN
        INSERT INTO cdc.outbox (schema_name, table_name, action, key, data)
        SELECT sch, rel, 'insert',
               CASE WHEN onekey IS NOT NULL THEN r.d -> onekey
                    WHEN keys IS NOT NULL THEN (SELECT jsonb_object_agg(c, r.d -> c) FROM unnest(keys) c)
               END,
               r.d
        FROM (SELECT to_jsonb(nr.*) AS d FROM new_rows nr OFFSET 0) r;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO cdc.outbox (schema_name, table_name, action, key, data)
        SELECT sch, rel, 'delete',
               CASE WHEN onekey IS NOT NULL THEN r.d -> onekey
                    WHEN keys IS NOT NULL THEN (SELECT jsonb_object_agg(c, r.d -> c) FROM unnest(keys) c)
               END,
               r.d
        FROM (SELECT to_jsonb(orow.*) AS d FROM old_rows orow OFFSET 0) r;
    ELSE
        -- UPDATE: pair old and new rows by primary key. A row whose key
        -- changed has no partner and is reported as a delete of the old key
        -- and an insert of the new one; a row that did not change at all is
        -- not reported. Without a primary key (dropped after CDC was
        -- enabled), rows are paired by their position in the transition
        -- tables, which PostgreSQL fills in step, old and new together.
        WITH o AS (
            SELECT CASE WHEN onekey IS NOT NULL THEN r.d -> onekey
                        WHEN keys IS NOT NULL THEN (SELECT jsonb_object_agg(c, r.d -> c) FROM unnest(keys) c)
                   END AS k, r.d, r.pos
            FROM (SELECT to_jsonb(orow.*) AS d, row_number() OVER () AS pos FROM old_rows orow OFFSET 0) r
        ), n AS (
            SELECT CASE WHEN onekey IS NOT NULL THEN r.d -> onekey
                        WHEN keys IS NOT NULL THEN (SELECT jsonb_object_agg(c, r.d -> c) FROM unnest(keys) c)
                   END AS k, r.d, r.pos
            FROM (SELECT to_jsonb(nr.*) AS d, row_number() OVER () AS pos FROM new_rows nr OFFSET 0) r
        )
        INSERT INTO cdc.outbox (schema_name, table_name, action, key, data, changes)
        SELECT sch, rel,
               CASE WHEN o.d IS NULL THEN 'insert' WHEN n.d IS NULL THEN 'delete' ELSE 'update' END,
               coalesce(n.k, o.k),
               coalesce(n.d, o.d),
               CASE WHEN o.d IS NOT NULL AND n.d IS NOT NULL THEN
                   (SELECT json_agg(json_build_object('field', e.key, 'old', o.d -> e.key, 'new', e.value))
                    FROM jsonb_each(n.d) e
                    WHERE (o.d -> e.key) IS DISTINCT FROM e.value)
               END
        FROM o FULL JOIN n
          ON coalesce(o.k, to_jsonb(o.pos)) = coalesce(n.k, to_jsonb(n.pos))
        WHERE o.d IS DISTINCT FROM n.d;
    END IF;

    -- Notify only when a relay waits for it (see cdc.relay_wake_enter), and
    -- only after the outbox rows are written: the relay relies on a writer
    -- that saw no waiting relay still holding its lock on cdc.outbox.
    GET DIAGNOSTICS written = ROW_COUNT;
    IF written > 0
       AND pg_sequence_last_value('cdc.relay_wake_enter') > pg_sequence_last_value('cdc.relay_wake_leave') THEN
        PERFORM pg_notify('cdc_events', pg_current_xact_id()::text);
    END IF;
    RETURN NULL;
END
$fn$;

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
