-- Serialises concurrent migrations (released by unlock.sql) and creates the
-- schema tern keeps its version table in. The lock key is pgrelay's own (constants.go).
SELECT pg_advisory_lock({{.MigrateLockKey}});
CREATE SCHEMA IF NOT EXISTS cdc;
