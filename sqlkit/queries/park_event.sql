-- Copies outbox row ($2, $3) into cdc.failed_event for relay $1, so that it
-- outlives the outbox's retention.
INSERT INTO cdc.failed_event AS f
    (relay_name, id, txid, changed_at, schema_name, table_name, action, key, data, changes, handler, error, attempts)
SELECT $1, o.id, o.txid, o.changed_at, o.schema_name, o.table_name, o.action, o.key, o.data, o.changes, $4, $5, $6
FROM cdc.outbox o
WHERE o.txid = $2 AND o.id = $3
ON CONFLICT (relay_name, id) DO UPDATE
SET handler = excluded.handler, error = excluded.error,
    attempts = f.attempts + excluded.attempts, failed_at = now();
