-- Ends the backends given by pid ($1) and start time ($2) that are still
-- there: a relay's own, abandoned when it reconnected, or those of a relay
-- whose lease was taken over. Only those this role may end: its own role's
-- (or any with pg_signal_backend), never a superuser's unless it is one.
-- Where the role may not even see a backend's start time, it is left alone.
-- Returns how many were signalled.
SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid))
FROM unnest($1::int[], $2::timestamptz[]) AS b(pid, started)
JOIN pg_stat_activity a ON a.pid = b.pid AND a.backend_start = b.started
WHERE a.pid <> pg_backend_pid()
  AND (pg_has_role(a.usesysid, 'MEMBER') OR pg_has_role('pg_signal_backend', 'MEMBER'))
  AND (NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = a.usesysid)
       OR (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user));
