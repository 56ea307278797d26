-- The lease of relay name $1 as a standby sees it, without locking its row:
-- who holds it, until when, and whether it is free to take (see
-- lease_acquire.sql, which decides again under the row lock).
SELECT c.lease_holder, c.lease_expires_at,
       c.lease_holder IS NULL
       OR c.lease_expires_at IS NULL
       OR c.lease_expires_at <= now()
       OR NOT EXISTS (
            SELECT FROM cdc.relay_instance i
            JOIN pg_stat_activity a ON a.pid = ANY (i.backend_pids)
            WHERE i.name = $1 AND i.instance = c.lease_holder) AS free
FROM cdc.relay_cursor c
WHERE c.name = $1;
