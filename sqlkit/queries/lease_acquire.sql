-- Instance $2 takes the lease of relay name $1 for $3, if no one holds it,
-- it has expired, it is $2's own, or none of its holder's backends is left
-- (the holder's process is gone: no need to wait for the expiry). Taking
-- it increments the token, which fences off the previous holder's writes.
-- leader_since stays when $2 held it with token $4 all along (a reconnect
-- within the lease). No row: another relay holds it.
--
-- Also returns the previous holder, whose backends the new one ends. The
-- liveness check looks at pids alone: they are visible to every role, and
-- a reused pid only makes the wait last until the expiry.
WITH prev AS (
    SELECT p.lease_holder FROM cdc.relay_cursor p WHERE p.name = $1
)
INSERT INTO cdc.relay_cursor AS c (name, lease_holder, lease_token, leader_since, lease_renewed_at, lease_expires_at)
VALUES ($1, $2, 1, now(), now(), now() + $3::interval)
ON CONFLICT (name) DO UPDATE
SET lease_holder = excluded.lease_holder,
    lease_token = c.lease_token + 1,
    leader_since = CASE WHEN c.lease_holder = $2 AND c.lease_token = $4 AND c.lease_expires_at > now()
                        THEN c.leader_since ELSE now() END,
    lease_renewed_at = excluded.lease_renewed_at,
    lease_expires_at = excluded.lease_expires_at
WHERE c.lease_holder IS NULL
   OR c.lease_holder = $2
   OR c.lease_expires_at IS NULL
   OR c.lease_expires_at <= now()
   OR NOT EXISTS (
        SELECT FROM cdc.relay_instance i
        JOIN pg_stat_activity a ON a.pid = ANY (i.backend_pids)
        WHERE i.name = $1 AND i.instance = c.lease_holder)
RETURNING c.lease_token, c.leader_since, (SELECT p.lease_holder FROM prev p);
