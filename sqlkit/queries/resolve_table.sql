-- $1 schema ('' for the search_path), $2 table: exact names, quoted here so
-- that no name is ever read as SQL.
SELECT c.oid, n.nspname, c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = pg_catalog.to_regclass(
    CASE WHEN $1::text = '' THEN pg_catalog.quote_ident($2::text)
         ELSE pg_catalog.quote_ident($1::text) || '.' || pg_catalog.quote_ident($2::text)
    END);
