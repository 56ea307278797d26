-- The tables with CDC and their capture options, and whether the row
-- filter has gates (functions/18_gate.sql).
SELECT n.nspname, c.relname, t.actions, t.ignore_columns, t.exclude_columns, t.row_filter,
       EXISTS (SELECT FROM pg_catalog.pg_trigger g WHERE g.tgrelid = t.tbl AND g.tgname LIKE 'cdc\_gate\_%')
FROM cdc.cdc_tables() AS t
JOIN pg_catalog.pg_class c ON c.oid = t.tbl
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
ORDER BY n.nspname, c.relname;
