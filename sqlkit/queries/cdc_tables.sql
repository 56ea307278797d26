SELECT n.nspname, c.relname
FROM cdc.cdc_tables() AS t(tbl)
JOIN pg_catalog.pg_class c ON c.oid = t.tbl
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
ORDER BY n.nspname, c.relname;
