-- The backends relay instance $2 of name $1 last registered, and whether
-- they are its own (no connection pooler in between).
SELECT i.backend_pids, i.backend_starts, i.direct
FROM cdc.relay_instance i
WHERE i.name = $1 AND i.instance = $2;
