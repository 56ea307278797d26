-- Capture options: which actions, which columns and which rows of a table
-- are captured (cdc.ensure_cdc_for's arguments). Installed by every Migrate
-- (see functions.go).
--
-- The options live in the capture triggers themselves, so that changing
-- them is as atomic as replacing the triggers: a statement runs under the
-- old triggers or the new ones. The actions are the triggers that exist; a
-- table with column or row options has triggers with four arguments (see
-- cdc.capture_args), one without has none (or only 'partition'), so that
-- its capture takes the plain path and pays nothing for the feature.

-- cdc.trigger_args returns a trigger's arguments (pg_trigger.tgargs: each
-- argument followed by a zero byte).
CREATE OR REPLACE FUNCTION cdc.trigger_args(args bytea) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    out text[] := '{}';
    i   int := 1;
    j   int;
BEGIN
    WHILE i <= length(args) LOOP
        j := position('\x00'::bytea IN substring(args FROM i));
        EXIT WHEN j = 0;
        out := out || convert_from(substring(args FROM i FOR j - 1), current_setting('server_encoding'));
        i := i + j;
    END LOOP;
    RETURN out;
END
$fn$;

-- cdc.json_without returns the JSON object j without the keys in keys, the
-- others in their order: a row image without its excluded columns.
CREATE OR REPLACE FUNCTION cdc.json_without(j json, keys text[]) RETURNS json
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT coalesce(json_object_agg(f.key, f.value ORDER BY f.n), '{}'::json)
    FROM json_each(j) WITH ORDINALITY AS f(key, value, n)
    WHERE f.key <> ALL (keys)
$fn$;

-- cdc.json_overlay returns the JSON object a with the values of the keys in
-- keys taken from b: an update's old image with its ignored columns made
-- equal to the new image's, so that the relay, comparing the two, lists
-- no ignored column among the changes.
CREATE OR REPLACE FUNCTION cdc.json_overlay(a json, b json, keys text[]) RETURNS json
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT coalesce(json_object_agg(f.key,
                                    CASE WHEN f.key = ANY (keys) THEN coalesce(b -> f.key, f.value) ELSE f.value END
                                    ORDER BY f.n), '{}'::json)
    FROM json_each(a) WITH ORDINALITY AS f(key, value, n)
$fn$;

-- cdc.check_row_filter validates a row filter for tbl and returns it as
-- PostgreSQL prints it back: a boolean expression over tbl's own columns,
-- with no subquery, no other table, and only immutable built-in functions
-- and operators, as PostgreSQL's publication row filters require. It tries
-- the filter on an empty temporary copy of tbl's columns (as a CHECK
-- constraint and an index expression, which enforce exactly that), inside
-- a block that is always rolled back, so nothing it ran is left behind and
-- tbl is never locked. The text returned is PostgreSQL's own printing of
-- one expression, safe to put into the capture trigger's queries.
CREATE OR REPLACE FUNCTION cdc.check_row_filter(tbl regclass, row_filter text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    printed text;
    userfn  text;
    copy    text := 'pgrelay_row_filter_' || tbl::oid::text;
BEGIN
    BEGIN
        EXECUTE format('CREATE TEMPORARY TABLE %I (LIKE %s)', copy, tbl);
        -- First as a view, which PostgreSQL parses without planning: a
        -- CHECK constraint and an index plan their expression, which runs
        -- the functions of constants in it, as whoever checks. A filter
        -- may come from a trigger's arguments (cdc.refresh_capture_functions),
        -- which a table's owner can write: one that calls a function,
        -- operator or domain of somebody's is refused before anything of
        -- it runs.
        EXECUTE format('CREATE TEMPORARY VIEW %I AS SELECT FROM pg_temp.%I WHERE %s', copy || '_parsed', copy, row_filter);
        SELECT CASE d.refclassid WHEN 'pg_proc'::regclass THEN d.refobjid::regprocedure::text
                                 WHEN 'pg_operator'::regclass THEN 'operator ' || d.refobjid::regoperator::text
                                 ELSE 'domain ' || d.refobjid::regtype::text END INTO userfn
        FROM pg_rewrite r
        JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
        WHERE r.ev_class = format('pg_temp.%I', copy || '_parsed')::regclass
          AND d.refobjid >= 16384
          AND (d.refclassid IN ('pg_proc'::regclass, 'pg_operator'::regclass)
               OR d.refclassid = 'pg_type'::regclass
                  AND EXISTS (SELECT FROM pg_type ty WHERE ty.oid = d.refobjid AND ty.typtype = 'd'))
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'PR100'; -- refused below
        END IF;
        EXECUTE format('ALTER TABLE pg_temp.%I ADD CONSTRAINT row_filter CHECK (%s)', copy, row_filter);
        SELECT pg_get_expr(c.conbin, c.conrelid) INTO printed
        FROM pg_constraint c
        WHERE c.conrelid = format('pg_temp.%I', copy)::regclass AND c.conname = 'row_filter';
        EXECUTE format('CREATE INDEX ON pg_temp.%I ((%s))', copy, printed);
        SELECT coalesce(d.refobjid::regprocedure::text, d.refobjid::regoperator::text) INTO userfn
        FROM pg_index i JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
        WHERE i.indrelid = format('pg_temp.%I', copy)::regclass
          AND d.refclassid IN ('pg_proc'::regclass, 'pg_operator'::regclass)
        LIMIT 1;
        RAISE EXCEPTION USING ERRCODE = 'PR100'; -- undo everything above
    EXCEPTION
        WHEN SQLSTATE 'PR100' THEN
            NULL;
        WHEN syntax_error THEN
            RAISE EXCEPTION 'table %: the row filter does not parse: %', tbl, SQLERRM USING ERRCODE = 'PR003';
        WHEN undefined_column THEN
            RAISE EXCEPTION 'table %: the row filter names an unknown column: %', tbl, SQLERRM USING ERRCODE = 'PR003';
        WHEN undefined_table OR feature_not_supported THEN
            RAISE EXCEPTION 'table %: the row filter references other tables (%): it may use the table''s own columns only', tbl, SQLERRM
                USING ERRCODE = 'PR003';
        WHEN datatype_mismatch THEN
            RAISE EXCEPTION 'table %: the row filter is not a boolean expression: %', tbl, SQLERRM USING ERRCODE = 'PR003';
        WHEN invalid_object_definition THEN
            RAISE EXCEPTION 'table %: the row filter calls a volatile function (only immutable built-in functions are allowed): %', tbl, SQLERRM
                USING ERRCODE = 'PR003';
        WHEN OTHERS THEN
            RAISE EXCEPTION 'table %: invalid row filter: %', tbl, SQLERRM USING ERRCODE = 'PR003';
    END;
    IF userfn IS NOT NULL THEN
        RAISE EXCEPTION 'table %: the row filter calls % (only immutable built-in functions and operators are allowed)', tbl, userfn
            USING ERRCODE = 'PR003';
    END IF;
    RETURN printed;
END
$fn$;

-- cdc.capture_args returns the capture trigger arguments for relation rel
-- (tbl or one of its partitions) under the given options: none, or
-- 'partition', for a table without column or row options; otherwise four:
-- the partition marker ('' or 'partition'), the excluded and the ignored
-- columns as rel's attribute numbers (which follow renames), and the row
-- filter ('' for none).
CREATE OR REPLACE FUNCTION cdc.capture_args(tbl regclass, rel regclass, ignore_columns text[],
                                             exclude_columns text[], row_filter text) RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE
        WHEN cardinality(ignore_columns) = 0 AND cardinality(exclude_columns) = 0 AND row_filter = '' THEN
            CASE WHEN rel = tbl THEN '{}'::text[] ELSE ARRAY['partition'] END
        ELSE ARRAY[
            CASE WHEN rel = tbl THEN '' ELSE 'partition' END,
            (SELECT coalesce(array_agg(a.attnum ORDER BY a.attnum), '{}')::text FROM pg_attribute a
             WHERE a.attrelid = rel AND a.attname = ANY (exclude_columns) AND a.attnum > 0 AND NOT a.attisdropped),
            (SELECT coalesce(array_agg(a.attnum ORDER BY a.attnum), '{}')::text FROM pg_attribute a
             WHERE a.attrelid = rel AND a.attname = ANY (ignore_columns) AND a.attnum > 0 AND NOT a.attisdropped),
            row_filter]
    END
$fn$;

-- cdc.capture_columns checks that every name in columns is a column of tbl
-- and returns them in column order, without repeats.
CREATE OR REPLACE FUNCTION cdc.capture_columns(tbl regclass, columns text[], what text) RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    unknown text;
BEGIN
    SELECT c INTO unknown FROM unnest(columns) c
    WHERE NOT EXISTS (SELECT FROM pg_attribute a
                      WHERE a.attrelid = tbl AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped)
    LIMIT 1;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'table %: % names column %, which does not exist', tbl, what, quote_ident(unknown)
            USING ERRCODE = 'PR003';
    END IF;
    RETURN (SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}') FROM pg_attribute a
            WHERE a.attrelid = tbl AND a.attname = ANY (columns) AND a.attnum > 0 AND NOT a.attisdropped);
END
$fn$;

-- cdc.capture_image and cdc.capture_holds are a row's image and whether the
-- filter holds for it, in a query over a transition table aliased x: the
-- row as "x.*", since a column named x would be what a bare "x" means, and
-- the filter's columns by name, as it was checked (cdc.check_row_filter).
-- excl_var names the excluded columns' array. Callers put them into
-- format() as arguments, never into its format string: the filter may
-- contain % signs.
CREATE OR REPLACE FUNCTION cdc.capture_image(has_excl boolean, excl_var text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN NOT has_excl THEN 'to_json(x.*)' ELSE 'cdc.json_without(to_json(x.*), ' || excl_var || ')' END
$fn$;

CREATE OR REPLACE FUNCTION cdc.capture_holds(filter text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN filter = '' THEN 'true' ELSE 'coalesce((' || filter || '), false)' END
$fn$;

-- cdc.capture_chunk_statement is, for op 'INSERT' or 'DELETE', a statement
-- that writes the captured rows as one chunk when they fit one, as
-- cdc.capture()'s common path does, and else writes nothing (then
-- cdc.capture_statement's cuts them). vars as there. It counts first, so
-- that a large statement's JSON is never built in one piece. With it, a
-- one-row INSERT through a table whose filter every row passes costs about
-- a fifth less (internal/bench/tried.md).
CREATE OR REPLACE FUNCTION cdc.capture_chunk_statement(op text, has_excl boolean, filter text, vars text[])
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT format($sql$INSERT INTO cdc.outbox (schema_name, table_name, action, events, key_columns, rows)
SELECT %1$s, %2$s, %3$L, s.n, %4$s, a.j
FROM (SELECT count(*) AS n, sum(pg_column_size(x.*)) AS b FROM %5$s x WHERE %6$s) s,
     LATERAL (SELECT json_agg(%7$s) AS j FROM %5$s x WHERE %6$s AND s.n <= {{.InsertChunkRows}} AND s.b <= {{.InsertChunkBytes}}) a
WHERE a.j IS NOT NULL$sql$,
        vars[1], vars[2], lower(op), vars[3], CASE op WHEN 'INSERT' THEN 'new_rows' ELSE 'old_rows' END,
        cdc.capture_holds(filter), cdc.capture_image(has_excl, vars[4]))
$fn$;

-- cdc.capture_statement is cdc.capture_sql (below) with the statement's
-- inputs named by vars (schema, table, key columns, excluded and ignored
-- columns: parameters, or a function's variables); has_excl and has_ign say
-- whether there are excluded and ignored columns. into_clause, if not '',
-- is put after the statement's final SELECT list (' INTO v', for static SQL
-- in PL/pgSQL).
CREATE OR REPLACE FUNCTION cdc.capture_statement(op text, has_excl boolean, has_ign boolean, filter text,
                                                  vars text[], into_clause text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    img   constant text := cdc.capture_image(has_excl, vars[4]);
    holds constant text := cdc.capture_holds(filter);
    -- Inserts or deletes of the images in c(j, pos), cut into chunks as
    -- the plain path cuts them.
    chunks constant text :=
        'INSERT INTO cdc.outbox (schema_name, table_name, action, events, key_columns, rows) '
        'SELECT ' || vars[1] || ', ' || vars[2] || ', %1$L, count(*), ' || vars[3] || ', json_agg(w.j ORDER BY w.pos) '
        'FROM (SELECT c.j, c.pos, sum(pg_column_size(c.j)) OVER (ORDER BY c.pos) AS upto FROM %2$s c) w '
        'GROUP BY (w.pos - 1) / {{.InsertChunkRows}}, w.upto / {{.ChunkJSONBytes}} ORDER BY min(w.pos) RETURNING 1';
BEGIN
    IF op IN ('INSERT', 'DELETE') THEN
        RETURN format('WITH written AS (' || chunks || ') SELECT count(*)' || into_clause || ' FROM written',
            lower(op),
            '(SELECT ' || img || ' AS j, row_number() OVER () AS pos FROM '
                || CASE op WHEN 'INSERT' THEN 'new_rows' ELSE 'old_rows' END
                || ' x WHERE ' || holds || ')');
    END IF;
    -- UPDATE: pair the old and new rows (the i-th old row is the i-th new
    -- row before the statement), then sort the pairs by where the filter
    -- holds.
    RETURN format($sql$
        WITH p AS MATERIALIZED (
            SELECT n.pos, n.j AS nj, o.j AS oj, n.m AS nm, o.m AS om
            FROM (SELECT row_number() OVER () AS pos, %1$s AS j, %2$s AS m FROM new_rows x) n
            JOIN (SELECT row_number() OVER () AS pos, %1$s AS j, %2$s AS m FROM old_rows x) o ON o.pos = n.pos
        ),
        u AS (
            SELECT p.pos, p.nj, %3$s AS oj FROM p WHERE p.nm AND p.om
        ),
        changed AS (
            SELECT row_number() OVER (ORDER BY u.pos) AS pos, u.nj, u.oj FROM u
            WHERE EXISTS (SELECT FROM json_each(u.nj) f LEFT JOIN json_each(u.oj) g ON g.key = f.key
                          WHERE f.value::text IS DISTINCT FROM g.value::text)
        ),
        updated AS (
            INSERT INTO cdc.outbox (schema_name, table_name, action, events, key_columns, rows, old_rows)
            SELECT %6$s, %7$s, 'update', 2 * count(*), %8$s, json_agg(w.nj ORDER BY w.pos), json_agg(w.oj ORDER BY w.pos)
            FROM (SELECT c.*, sum(pg_column_size(c.nj) + pg_column_size(c.oj)) OVER (ORDER BY c.pos) AS upto FROM changed c) w
            GROUP BY (w.pos - 1) / {{.UpdateChunkRows}}, w.upto / {{.ChunkJSONBytes}} ORDER BY min(w.pos)
            RETURNING 1
        ),
        deleted AS (%4$s),
        inserted AS (%5$s)
        SELECT (SELECT count(*) FROM updated) + (SELECT count(*) FROM deleted) + (SELECT count(*) FROM inserted)%9$s
        $sql$,
        img, holds,
        CASE WHEN NOT has_ign THEN 'p.oj' ELSE 'cdc.json_overlay(p.oj, p.nj, ' || vars[5] || ')' END,
        format(chunks, 'delete', '(SELECT p.oj AS j, row_number() OVER (ORDER BY p.pos) AS pos FROM p WHERE p.om AND NOT p.nm)'),
        format(chunks, 'insert', '(SELECT p.nj AS j, row_number() OVER (ORDER BY p.pos) AS pos FROM p WHERE p.nm AND NOT p.om)'),
        vars[1], vars[2], vars[3], into_clause);
END
$fn$;

-- cdc.capture_sql returns the statement a capture function runs for a table
-- with column or row options, for op ('INSERT', 'UPDATE' or 'DELETE'): it
-- writes the statement's captured rows into the outbox as chunks, as the
-- plain path does, and returns how many outbox rows it wrote. $1, $2 and $3
-- are the event's schema and table names and the key columns; excl and ign
-- the excluded and ignored columns' names. Excluded columns are left out
-- of the row images; rows the filter does not hold for are left out, and
-- an updated row that moved into the filter becomes an insert, out of it a
-- delete; an updated row whose other columns did not change is left out,
-- and its old image gets the new values of the ignored columns, so that
-- they are not among the changes the relay finds.
CREATE OR REPLACE FUNCTION cdc.capture_sql(op text, excl text[], ign text[], filter text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT cdc.capture_statement(op, cardinality(excl) > 0, cardinality(ign) > 0, filter,
                                 ARRAY['$1', '$2', '$3', quote_literal(excl) || '::text[]', quote_literal(ign) || '::text[]'], '')
$fn$;
