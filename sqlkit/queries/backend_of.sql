-- The connection's backend: its pid, and its start time, which tells it
-- apart from a later backend that reuses the pid.
SELECT pg_backend_pid(), (SELECT a.backend_start FROM pg_stat_activity a WHERE a.pid = pg_backend_pid());
