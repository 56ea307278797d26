-- Records or refreshes relay instance $2 of name $1 (host $3, process $4,
-- backends $5/$6, $7: LISTEN works on them), seen now and presumed gone
-- after $8; and forgets instances of the name gone for ten times that.
WITH gone AS (
    DELETE FROM cdc.relay_instance g
    WHERE g.name = $1 AND g.instance <> $2 AND g.expires_at < now() - 10 * $8::interval
)
INSERT INTO cdc.relay_instance AS i
    (name, instance, host, pid, backend_pids, backend_starts, direct, started_at, seen_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, now(), now(), now() + $8::interval)
ON CONFLICT (name, instance) DO UPDATE
SET host = excluded.host,
    pid = excluded.pid,
    backend_pids = excluded.backend_pids,
    backend_starts = excluded.backend_starts,
    direct = excluded.direct,
    seen_at = excluded.seen_at,
    expires_at = excluded.expires_at;
