-- The capture trigger function. This file is installed by every Migrate (see
-- functions.go): edit it in place, never copy it into a migration.
--
-- cdc.capture() is the one trigger function behind every captured table. It
-- runs once per statement (not per row) over the statement's transition
-- tables, so a 1,000-row INSERT costs one INSERT ... SELECT into the outbox,
-- and it sends at most one NOTIFY per transaction: the payload is the
-- transaction id, identical within a transaction, and PostgreSQL folds
-- identical notifications of one transaction into one. It sends none while
-- every relay is busy reading the outbox anyway.
--
-- SECURITY DEFINER: application roles need no privilege on cdc.*. A
-- hostile search_path cannot substitute functions or operators used here,
-- nor the writer's settings change the JSON: the common path names
-- everything with its schema and runs only where the settings fit, and the
-- rest pins them first (functions/05_settings.sql explains why not with
-- SET clauses on the function).
--
-- It never raises for the application's sake: if the table lost its primary
-- key after CDC was enabled, events are still written, with a NULL key.
--
-- Chunks. Inserted, deleted and updated rows are written to the
-- outbox as chunks: one outbox row per statement (up to {{.InsertChunkRows}} rows of
-- it, {{.UpdateChunkRows}} for updates), holding the row images as a JSON array in "rows" (and
-- for updates the old images in "old_rows"). A 1,000-row INSERT then costs
-- one outbox row and one index entry instead of a thousand, and to_json() of
-- each row is the only per-row work: measured, this halved what capture adds
-- to bulk inserts, and the relay, not the trigger, compares old and new rows
-- of updates (see BENCHMARKS.md).
--
-- Event ids stay unique and increasing within a transaction: the id
-- sequence steps by {{.IDStep}}, and the events of a chunk with id c are c,
-- c+1, ... c+events-1 (for updates, c+2i, and c+2i+1 when row i changed its
-- key). Truncates and the rows written before chunks (migration 5) keep one outbox
-- row per event (events = 1, rows NULL). The view cdc.events shows every
-- event as its own row, for people and SQL.

CREATE OR REPLACE FUNCTION cdc.capture() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
AS $fn$
DECLARE
    -- Declared before any setting is pinned: types named by their schema.
    keys    pg_catalog.text[];
    written bigint;
    sch     pg_catalog.text;
    rel     pg_catalog.text;
    gen     bigint;
    cached  pg_catalog.text;
    nrows   bigint;
    nbytes  bigint;
    excl    pg_catalog.text[];
    ign     pg_catalog.text[];
    saved   pg_catalog.text[];
BEGIN
    -- The common statement first, in as few PL/pgSQL steps as possible
    -- (each costs a microsecond or more, paid by every statement of every
    -- writer): a table without options or partition argument, whose key
    -- columns this session has cached, and a statement small enough for
    -- one chunk. One INSERT counts the rows, makes their JSON only when
    -- they fit one chunk, and writes that chunk; when it writes nothing
    -- (no rows, too many, or no cached key), the general path below
    -- decides. Measured on pgbench's TPC-B statements, this took a fifth
    -- off what capture costs a transaction (see internal/bench/tried.md).
    -- Every name here has its schema, since the writer's search_path is in
    -- force (see the header), and "OPERATOR(pg_catalog.=)" is "=".
    IF TG_NARGS OPERATOR(pg_catalog.=) 0 AND TG_OP OPERATOR(pg_catalog.<>) 'TRUNCATE' AND cdc.capture_settings_ok() THEN
        gen := pg_catalog.pg_sequence_last_value(pg_catalog.to_regclass('cdc.ddl_generation'));
        cached := pg_catalog.current_setting('cdc.keys_' OPERATOR(pg_catalog.||) TG_RELID::pg_catalog.text, true);
        IF pg_catalog.split_part(cached, ':', 1) OPERATOR(pg_catalog.=) gen::pg_catalog.text THEN
            IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
                INSERT INTO cdc.outbox (schema_name, table_name, action, events, key_columns, rows, old_rows)
                SELECT TG_TABLE_SCHEMA, TG_TABLE_NAME, 'update', 2 OPERATOR(pg_catalog.*) s.n,
                       pg_catalog.substr(cached, pg_catalog.strpos(cached, ':') OPERATOR(pg_catalog.+) 1)::pg_catalog.text[], a.j,
                       (SELECT pg_catalog.json_agg(orow.*) FROM old_rows orow)
                FROM (SELECT pg_catalog.count(*) AS n, pg_catalog.sum(pg_catalog.pg_column_size(nr.*)) AS b FROM new_rows nr) s,
                     LATERAL (SELECT pg_catalog.json_agg(nr.*) AS j FROM new_rows nr
                              WHERE s.n OPERATOR(pg_catalog.<=) {{.UpdateChunkRows}} AND s.b OPERATOR(pg_catalog.<=) {{.UpdateChunkBytes}}) a
                WHERE a.j IS NOT NULL;
            ELSIF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
                INSERT INTO cdc.outbox (schema_name, table_name, action, events, key_columns, rows)
                SELECT TG_TABLE_SCHEMA, TG_TABLE_NAME, 'insert', s.n,
                       pg_catalog.substr(cached, pg_catalog.strpos(cached, ':') OPERATOR(pg_catalog.+) 1)::pg_catalog.text[], a.j
                FROM (SELECT pg_catalog.count(*) AS n, pg_catalog.sum(pg_catalog.pg_column_size(nr.*)) AS b FROM new_rows nr) s,
                     LATERAL (SELECT pg_catalog.json_agg(nr.*) AS j FROM new_rows nr
                              WHERE s.n OPERATOR(pg_catalog.<=) {{.InsertChunkRows}} AND s.b OPERATOR(pg_catalog.<=) {{.InsertChunkBytes}}) a
                WHERE a.j IS NOT NULL;
            ELSE
                INSERT INTO cdc.outbox (schema_name, table_name, action, events, key_columns, rows)
                SELECT TG_TABLE_SCHEMA, TG_TABLE_NAME, 'delete', s.n,
                       pg_catalog.substr(cached, pg_catalog.strpos(cached, ':') OPERATOR(pg_catalog.+) 1)::pg_catalog.text[], a.j
                FROM (SELECT pg_catalog.count(*) AS n, pg_catalog.sum(pg_catalog.pg_column_size(orow.*)) AS b FROM old_rows orow) s,
                     LATERAL (SELECT pg_catalog.json_agg(orow.*) AS j FROM old_rows orow
                              WHERE s.n OPERATOR(pg_catalog.<=) {{.InsertChunkRows}} AND s.b OPERATOR(pg_catalog.<=) {{.InsertChunkBytes}}) a
                WHERE a.j IS NOT NULL;
            END IF;
            GET DIAGNOSTICS written = ROW_COUNT;
            IF written OPERATOR(pg_catalog.>) 0 THEN
                -- As at the end of the general path.
                IF pg_catalog.pg_sequence_last_value('cdc.relay_wake_enter') OPERATOR(pg_catalog.>) pg_catalog.pg_sequence_last_value('cdc.relay_wake_leave') THEN
                    PERFORM pg_catalog.pg_notify('{{.NotifyChannel}}', pg_catalog.pg_current_xact_id()::pg_catalog.text);
                END IF;
                RETURN NULL;
            END IF;
            -- Nothing written. A statement without rows (an UPDATE or
            -- DELETE that matched none, an INSERT ... ON CONFLICT DO
            -- NOTHING that inserted none: common in applications) is done;
            -- only too many or too large rows need the general path, which
            -- found out the same for 140 µs a statement, against 60 here.
            IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
                IF NOT EXISTS (SELECT FROM old_rows orow) THEN
                    RETURN NULL;
                END IF;
            ELSIF NOT EXISTS (SELECT FROM new_rows nr) THEN
                RETURN NULL;
            END IF;
        END IF;
    END IF;

    -- The general path: the settings pinned first, so that the rest names
    -- things plainly; every way out of the block below passes the
    -- restore after it. Setting search_path here costs a statement tens of
    -- microseconds (more than SET clauses on the function do), so not
    -- where it is in place already: without the key cache the function
    -- has SET clauses (see the end of this file). Where the session's
    -- settings give the right JSON, only the search_path.
    IF NOT cdc.capture_settings_ok() THEN
        saved := cdc.capture_pin();
    ELSIF pg_catalog.current_setting('search_path') OPERATOR(pg_catalog.=) cdc.capture_search_path() THEN
        saved := '{}';
    ELSE
        saved := ARRAY[ARRAY['search_path', pg_catalog.current_setting('search_path')]];
        PERFORM pg_catalog.set_config('search_path', cdc.capture_search_path(), true);
    END IF;
    <<general>>
    BEGIN
        -- The event's schema and table (a partition's root), the key columns
        -- and the option columns' names (functions/17_capture_with.sql).
        SELECT c.sch, c.rel, c.keys, c.excl, c.ign INTO sch, rel, keys, excl, ign
        FROM cdc.capture_context(TG_RELID, TG_ARGV, TG_TABLE_SCHEMA, TG_TABLE_NAME) c;

        IF TG_OP = 'TRUNCATE' THEN
            -- A partition truncated on its own is reported on the partitioned
            -- table with the partition's name in data. TRUNCATE of the
            -- partitioned table fires its own trigger first, then its
            -- partitions': they see its event as this transaction's latest and
            -- add nothing.
            IF TG_NARGS > 0 AND TG_ARGV[0] = 'partition' AND EXISTS (
                SELECT 1 FROM (
                    SELECT o.action, o.data, o.schema_name, o.table_name FROM cdc.outbox o
                    WHERE o.txid = pg_current_xact_id()
                    ORDER BY o.txid DESC, o.id DESC LIMIT 1
                ) latest
                WHERE latest.action = 'truncate' AND latest.data IS NULL
                  AND latest.schema_name = sch AND latest.table_name = rel
            ) THEN
                EXIT general;
            END IF;
            INSERT INTO cdc.outbox (schema_name, table_name, action, data)
            VALUES (sch, rel, 'truncate',
                    CASE WHEN TG_NARGS > 0 THEN
                        jsonb_build_object('partition', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME)
                    END);
            written := 1;
            EXIT general;
        END IF;

        IF TG_NARGS >= 4 THEN
            -- Triggers with options call a function of their own
            -- (functions/17_capture_with.sql); this path serves those an older
            -- version installed that Migrate could not point there (see
            -- cdc.refresh_capture_functions). It applies their excluded and
            -- ignored columns (attribute numbers), never their row filter:
            -- the arguments are whatever the trigger's creator wrote, and
            -- this function runs as its owner, so a filter run here would be
            -- anybody's SQL with that owner's rights. Their rows are
            -- captured unfiltered, never lost.
            IF TG_ARGV[3] <> '' THEN
                RAISE WARNING 'pgrelay: %.% has a row filter that cdc.capture() does not apply, and its rows are captured unfiltered: run relay ensure-cdc for it with its options, as a member of both its owner and the role that migrated (or as superuser)',
                    sch, rel;
            END IF;
            -- The statement is built by cdc.capture_sql and run here, where
            -- the transition tables are visible.
            EXECUTE cdc.capture_sql(TG_OP, excl, ign, '') INTO written USING sch, rel, keys;
        ELSIF TG_OP IN ('INSERT', 'DELETE') THEN
            -- Inserted and deleted rows go into the outbox as chunks: one outbox
            -- row holds up to {{.InsertChunkRows}} row images as a JSON array (see the header
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
                EXIT general;
            END IF;
            -- pg_column_size counts stored (possibly compressed) bytes; 256 kB
            -- stays far below 1 GB of JSON however well the values compressed.
            IF nrows <= {{.InsertChunkRows}} AND nbytes <= {{.InsertChunkBytes}} THEN
                IF TG_OP = 'INSERT' THEN
                    INSERT INTO cdc.outbox (schema_name, table_name, action, events, key_columns, rows)
                    SELECT sch, rel, 'insert', count(*), keys, json_agg(nr.*) FROM new_rows nr;
                ELSE
                    INSERT INTO cdc.outbox (schema_name, table_name, action, events, key_columns, rows)
                    SELECT sch, rel, 'delete', count(*), keys, json_agg(orow.*) FROM old_rows orow;
                END IF;
            ELSE
                -- Chunks of at most {{.InsertChunkRows}} rows and about {{.ChunkJSONBytes}} bytes of JSON, in the
                -- statement's row order (ids are taken in ORDER BY order). Both
                -- bucket numbers grow with pos, so every chunk is a run of rows.
                IF TG_OP = 'INSERT' THEN
                    INSERT INTO cdc.outbox (schema_name, table_name, action, events, key_columns, rows)
                    SELECT sch, rel, 'insert', count(*), keys, json_agg(w.j ORDER BY w.pos)
                    FROM (SELECT r.j, r.pos, sum(pg_column_size(r.j)) OVER (ORDER BY r.pos) AS upto
                          FROM (SELECT to_json(nr.*) AS j, row_number() OVER () AS pos FROM new_rows nr) r) w
                    GROUP BY (w.pos - 1) / {{.InsertChunkRows}}, w.upto / {{.ChunkJSONBytes}}
                    ORDER BY min(w.pos);
                ELSE
                    INSERT INTO cdc.outbox (schema_name, table_name, action, events, key_columns, rows)
                    SELECT sch, rel, 'delete', count(*), keys, json_agg(w.j ORDER BY w.pos)
                    FROM (SELECT r.j, r.pos, sum(pg_column_size(r.j)) OVER (ORDER BY r.pos) AS upto
                          FROM (SELECT to_json(orow.*) AS j, row_number() OVER () AS pos FROM old_rows orow) r) w
                    GROUP BY (w.pos - 1) / {{.InsertChunkRows}}, w.upto / {{.ChunkJSONBytes}}
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
            -- so "events" counts ids here, and chunks hold at most {{.UpdateChunkRows}} rows.
            SELECT count(*), sum(pg_column_size(nr.*)) INTO nrows, nbytes FROM new_rows nr;
            IF nrows = 0 THEN
                EXIT general;
            END IF;
            IF nrows <= {{.UpdateChunkRows}} AND nbytes <= {{.UpdateChunkBytes}} THEN
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
                GROUP BY (w.pos - 1) / {{.UpdateChunkRows}}, w.upto / {{.ChunkJSONBytes}}
                ORDER BY min(w.pos);
            END IF;
            written := nrows;
        END IF;
    END general;

    -- Notify only when a relay waits for it (see cdc.relay_wake_enter), and
    -- only after the outbox rows are written: the relay relies on a writer
    -- that saw no waiting relay still holding its lock on cdc.outbox.
    -- (written is NULL after a statement with no rows: coalesced, so that
    -- the sequences are not read then, since NULL AND x evaluates x.)
    IF coalesce(written, 0) > 0
       AND pg_sequence_last_value('cdc.relay_wake_enter') > pg_sequence_last_value('cdc.relay_wake_leave') THEN
        PERFORM pg_notify('{{.NotifyChannel}}', pg_current_xact_id()::text);
    END IF;
    IF cardinality(saved) = 1 THEN
        PERFORM set_config('search_path', saved[1][2], true);
    ELSIF cardinality(saved) > 1 THEN
        PERFORM cdc.capture_unpin(saved);
    END IF;
    RETURN NULL;
END
$fn$;

-- Without the key cache (migrations run by a non-superuser, see migration
-- 4) every statement takes the general path, and there SET clauses on the
-- function cost less than pinning by hand: the function gets them, with
-- the values cdc.capture_pin() sets. Its pinning then finds them in place.
DO $do$
DECLARE
    saved text[];
BEGIN
    IF to_regclass('cdc.ddl_generation') IS NULL THEN
        saved := cdc.capture_pin();
        EXECUTE 'ALTER FUNCTION cdc.capture() '
            || (SELECT string_agg(format('SET %I FROM CURRENT', saved[g.i][1]), ' ' ORDER BY g.i)
                FROM generate_subscripts(saved, 1) AS g(i));
        PERFORM cdc.capture_unpin(saved);
    END IF;
END
$do$;
