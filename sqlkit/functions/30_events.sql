-- cdc.events, the outbox one event per row, for people and SQL. Installed by
-- every Migrate (see functions.go).

-- cdc.row_key returns the key of the row image d, whose primary-key columns
-- are cols, as the relay takes it: the one column's value, or an object of
-- the columns' values; null for a missing column, NULL without a key.
CREATE OR REPLACE FUNCTION cdc.row_key(d json, cols text[]) RETURNS json
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
CREATE OR REPLACE VIEW cdc.events AS
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
