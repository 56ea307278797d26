-- Whether pgrelay's migrations have ever run in this database.
SELECT to_regclass('cdc.schema_version') IS NOT NULL;
