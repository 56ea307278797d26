-- Serialises concurrent migrations (released by unlock.sql) and creates the
-- schema tern keeps its version table in. The lock key is pgrelay's own.
SELECT pg_advisory_lock(7305870462113470001);
CREATE SCHEMA IF NOT EXISTS cdc;
