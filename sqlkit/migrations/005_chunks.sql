-- History: what this migration installed then. The current functions are in
-- sqlkit/functions/, installed by every Migrate since migration 8.
--
-- Chunked capture. Inserted, deleted and updated rows are written to the
-- outbox as chunks: one outbox row per statement (up to 1,000 rows of it,
-- 512 for updates), holding the row images as a JSON array in "rows" (and
-- for updates the old images in "old_rows"). A 1,000-row INSERT then costs
-- one outbox row and one index entry instead of a thousand, and to_json() of
-- each row is the only per-row work: measured, this halved what capture adds
-- to bulk inserts, and the relay, not the trigger, compares old and new rows
-- of updates (see BENCHMARKS.md).
--
-- Event ids stay unique and increasing within a transaction: the id
-- sequence now steps by 1024, and the events of a chunk with id c are c,
-- c+1, ... c+events-1 (for updates, c+2i, and c+2i+1 when row i changed its
-- key). Truncates and the rows written before this migration keep one outbox
-- row per event (events = 1, rows NULL). The view cdc.events shows every
-- event as its own row, for people and SQL.

ALTER TABLE cdc.outbox
    ADD COLUMN events      int    NOT NULL DEFAULT 1,
    ADD COLUMN key_columns text[],
    ADD COLUMN rows        json,
    ADD COLUMN old_rows    json,
    ALTER COLUMN id SET INCREMENT BY 1024;

-- A relay's position inside a pending transaction is now an event id, which
-- may point into the middle of a chunk. Relays built before this migration
-- would read it as an outbox row id and skip the rest of that chunk, and
-- would not read chunks at all: the rename makes them fail loudly instead
-- ("column pending_after does not exist") until they are upgraded.
ALTER TABLE cdc.relay_cursor RENAME COLUMN pending_after TO pending_after_event;

COMMENT ON COLUMN cdc.outbox.events IS
    'pgrelay: how many event ids the row takes: 1, the length of rows, or twice that for updates';
COMMENT ON COLUMN cdc.outbox.rows IS
    'pgrelay: for a chunk, the row images as a JSON array (the new ones for updates); event i (from 0) has id id+i, or id+2i and id+2i+1 for updates';
COMMENT ON COLUMN cdc.outbox.old_rows IS
    'pgrelay: for a chunk of updates, the old row images, in step with rows';
COMMENT ON COLUMN cdc.outbox.key_columns IS
    'pgrelay: for a chunk, the primary-key columns from which each event''s key is taken';

-- lz4 compresses and decompresses chunks several times faster than the
-- default pglz; servers built without it keep pglz.
DO $do$
BEGIN
    ALTER TABLE cdc.outbox ALTER COLUMN rows SET COMPRESSION lz4,
                           ALTER COLUMN old_rows SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available: outbox chunks are compressed with pglz';
END
$do$;

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
    nrows   bigint;
    nbytes  bigint;
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

    IF TG_OP IN ('INSERT', 'DELETE') THEN
        -- Inserted and deleted rows go into the outbox as chunks: one outbox
        -- row holds up to 1,000 row images as a JSON array (see the header
        -- of this migration). The relay derives each event's key from
        -- key_columns. Small statements, the vast majority, are one chunk;
        -- larger ones, or ones with large rows, are cut so that no chunk
        -- comes near PostgreSQL's 1 GB limit on a value.
        IF TG_OP = 'INSERT' THEN
            SELECT count(*), sum(pg_column_size(nr.*)) INTO nrows, nbytes FROM new_rows nr;
        ELSE
            SELECT count(*), sum(pg_column_size(orow.*)) INTO nrows, nbytes FROM old_rows orow;
        END IF;
        IF nrows = 0 THEN
            RETURN NULL;
        END IF;
        -- pg_column_size counts stored (possibly compressed) bytes; 256 kB
        -- stays far below 1 GB of JSON however well the values compressed.
        IF nrows <= 1000 AND nbytes <= 262144 THEN
            IF TG_OP = 'INSERT' THEN
                INSERT INTO cdc.outbox (schema_name, table_name, action, events, key_columns, rows)
                SELECT sch, rel, 'insert', count(*), keys, json_agg(nr.*) FROM new_rows nr;
            ELSE
                INSERT INTO cdc.outbox (schema_name, table_name, action, events, key_columns, rows)
                SELECT sch, rel, 'delete', count(*), keys, json_agg(orow.*) FROM old_rows orow;
            END IF;
        ELSE
            -- Chunks of at most 1,000 rows and about 16 MB of JSON, in the
            -- statement's row order (ids are taken in ORDER BY order). Both
            -- bucket numbers grow with pos, so every chunk is a run of rows.
            IF TG_OP = 'INSERT' THEN
                INSERT INTO cdc.outbox (schema_name, table_name, action, events, key_columns, rows)
                SELECT sch, rel, 'insert', count(*), keys, json_agg(w.j ORDER BY w.pos)
                FROM (SELECT r.j, r.pos, sum(pg_column_size(r.j)) OVER (ORDER BY r.pos) AS upto
                      FROM (SELECT to_json(nr.*) AS j, row_number() OVER () AS pos FROM new_rows nr) r) w
                GROUP BY (w.pos - 1) / 1000, w.upto / 16777216
                ORDER BY min(w.pos);
            ELSE
                INSERT INTO cdc.outbox (schema_name, table_name, action, events, key_columns, rows)
                SELECT sch, rel, 'delete', count(*), keys, json_agg(w.j ORDER BY w.pos)
                FROM (SELECT r.j, r.pos, sum(pg_column_size(r.j)) OVER (ORDER BY r.pos) AS upto
                      FROM (SELECT to_json(orow.*) AS j, row_number() OVER () AS pos FROM old_rows orow) r) w
                GROUP BY (w.pos - 1) / 1000, w.upto / 16777216
                ORDER BY min(w.pos);
            END IF;
        END IF;
        written := nrows;
    ELSE
        -- UPDATE: chunks too, with the new rows in "rows" and the old ones in
        -- "old_rows", two JSON arrays in step: PostgreSQL fills the
        -- transition tables together, so the i-th old row is the i-th new
        -- row before the statement. The relay pairs them: a row whose key
        -- changed is reported as a delete of the old key and an insert of
        -- the new one, a row that did not change is not reported, and the
        -- others as updates with their changed columns. Each updated row
        -- takes two event ids (the second for the insert of a changed key),
        -- so "events" counts ids here, and chunks hold at most 512 rows.
        SELECT count(*), sum(pg_column_size(nr.*)) INTO nrows, nbytes FROM new_rows nr;
        IF nrows = 0 THEN
            RETURN NULL;
        END IF;
        IF nrows <= 512 AND nbytes <= 131072 THEN
            INSERT INTO cdc.outbox (schema_name, table_name, action, events, key_columns, rows, old_rows)
            SELECT sch, rel, 'update', 2 * nrows, keys,
                   (SELECT json_agg(nr.*) FROM new_rows nr),
                   (SELECT json_agg(orow.*) FROM old_rows orow);
        ELSE
            INSERT INTO cdc.outbox (schema_name, table_name, action, events, key_columns, rows, old_rows)
            SELECT sch, rel, 'update', 2 * count(*), keys,
                   json_agg(w.nj ORDER BY w.pos), json_agg(w.oj ORDER BY w.pos)
            FROM (SELECT n.pos, n.j AS nj, o.j AS oj,
                         sum(pg_column_size(n.j) + pg_column_size(o.j)) OVER (ORDER BY n.pos) AS upto
                  FROM (SELECT to_json(nr.*) AS j, row_number() OVER () AS pos FROM new_rows nr) n
                  JOIN (SELECT to_json(orow.*) AS j, row_number() OVER () AS pos FROM old_rows orow) o
                    ON o.pos = n.pos) w
            GROUP BY (w.pos - 1) / 512, w.upto / 16777216
            ORDER BY min(w.pos);
        END IF;
        written := nrows;
    END IF;

    -- Notify only when a relay waits for it (see cdc.relay_wake_enter), and
    -- only after the outbox rows are written: the relay relies on a writer
    -- that saw no waiting relay still holding its lock on cdc.outbox.
    IF written > 0
       AND pg_sequence_last_value('cdc.relay_wake_enter') > pg_sequence_last_value('cdc.relay_wake_leave') THEN
        PERFORM pg_notify('cdc_events', pg_current_xact_id()::text);
    END IF;
    RETURN NULL;
END
$fn$;

-- cdc.row_key returns the key of the row image d, whose primary-key columns
-- are cols, as the relay takes it: the one column's value, or an object of
-- the columns' values; null for a missing column, NULL without a key.
CREATE FUNCTION cdc.row_key(d json, cols text[]) RETURNS json
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN cardinality(cols) = 1 THEN coalesce(d -> cols[1], 'null'::json)
                WHEN cols IS NOT NULL THEN
                    (SELECT json_object_agg(c.name, coalesce(d -> c.name, 'null'::json) ORDER BY c.pos)
                     FROM unnest(cols) WITH ORDINALITY AS c(name, pos))
           END
$fn$;

-- cdc.events shows the outbox one event per row, as the relay delivers
-- them: chunks unnested, each event's key taken from its row, and updated
-- rows paired and compared the way the relay does it (sqlkit/chunk.go), on
-- the JSON text.
CREATE VIEW cdc.events AS
SELECT o.id, o.txid, o.changed_at, o.schema_name, o.table_name, o.action, o.key, o.data, o.changes
FROM cdc.outbox o
WHERE o.rows IS NULL
UNION ALL
SELECT o.id + e.i - 1, o.txid, o.changed_at, o.schema_name, o.table_name, o.action,
       cdc.row_key(e.v, o.key_columns)::jsonb, e.v::jsonb, NULL::json
FROM cdc.outbox o
CROSS JOIN LATERAL json_array_elements(o.rows) WITH ORDINALITY AS e(v, i)
WHERE o.rows IS NOT NULL AND o.old_rows IS NULL
UNION ALL
SELECT o.id + 2 * (p.i - 1) + x.second, o.txid, o.changed_at, o.schema_name, o.table_name,
       x.action, x.key::jsonb, x.data::jsonb, x.changes
FROM cdc.outbox o
CROSS JOIN LATERAL (
    SELECT n.i, n.v AS nv, ov.v AS ov,
           cdc.row_key(n.v, o.key_columns)::text AS nk, cdc.row_key(ov.v, o.key_columns)::text AS ok
    FROM json_array_elements(o.rows) WITH ORDINALITY AS n(v, i)
    JOIN json_array_elements(o.old_rows) WITH ORDINALITY AS ov(v, i) ON ov.i = n.i
) p
CROSS JOIN LATERAL (
    SELECT 0 AS second, 'update'::text AS action, p.nk AS key, p.nv AS data,
           (SELECT json_agg(json_build_object('field', f.key, 'old', coalesce(p.ov -> f.key, 'null'::json), 'new', f.value))
            FROM json_each(p.nv) AS f
            WHERE (p.ov -> f.key)::text IS DISTINCT FROM f.value::text) AS changes
    WHERE p.nk IS NOT DISTINCT FROM p.ok AND p.nv::text <> p.ov::text
    UNION ALL
    SELECT 0, 'delete', p.ok, p.ov, NULL WHERE p.nk IS DISTINCT FROM p.ok
    UNION ALL
    SELECT 1, 'insert', p.nk, p.nv, NULL WHERE p.nk IS DISTINCT FROM p.ok
) x
WHERE o.old_rows IS NOT NULL;

COMMENT ON VIEW cdc.events IS
    'pgrelay: the outbox, one row per event (chunks unnested, updates paired and compared)';
