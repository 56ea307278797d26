-- Records event $3 (of transaction $2) in cdc.failed_event for relay $1, with
-- its contents ($4..$10), so that it outlives the outbox's retention. The
-- contents come from the relay: an event may be one of a chunk's.
INSERT INTO cdc.failed_event AS f
    (relay_name, id, txid, changed_at, schema_name, table_name, action, key, data, changes, handler, error, attempts)
VALUES ($1, $3, $2, $4, $5, $6, $7, $8::text::jsonb, $9::text::jsonb, $10::text::json, $11, $12, $13)
ON CONFLICT (relay_name, id) DO UPDATE
SET handler = excluded.handler, error = excluded.error,
    attempts = f.attempts + excluded.attempts, failed_at = now();
