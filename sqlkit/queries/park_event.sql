-- Records event $3 (of transaction $2) in cdc.failed_event for relay $1, with
-- its contents ($4..$10), so that it outlives the outbox's retention. The
-- contents come from the relay: an event may be one of a chunk's. Only the
-- lease holder (token $14) parks: it runs after save_progress.sql, which
-- locked the cursor row, in the same transaction.
INSERT INTO cdc.failed_event AS f
    (relay_name, id, txid, changed_at, schema_name, table_name, action, key, data, changes, handler, error, attempts)
SELECT $1::text, $3::bigint, $2::xid8, $4::timestamptz, $5::text, $6::text, $7::text, $8::text::jsonb, $9::text::jsonb,
       $10::text::json, $11::text, $12::text, $13::int
WHERE EXISTS (SELECT FROM cdc.relay_cursor c WHERE c.name = $1 AND c.lease_token = $14)
ON CONFLICT (relay_name, id) DO UPDATE
SET handler = excluded.handler, error = excluded.error,
    attempts = f.attempts + excluded.attempts, failed_at = now();
