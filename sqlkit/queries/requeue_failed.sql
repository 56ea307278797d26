-- Moves relay $1's parked events back into the outbox, as new events of the
-- current transaction (new event_id and txid, original change time).
WITH moved AS (
    DELETE FROM cdc.failed_event WHERE relay_name = $1 RETURNING *
)
INSERT INTO cdc.outbox (changed_at, schema_name, table_name, action, key, data, changes)
SELECT changed_at, schema_name, table_name, action, key, data, changes
FROM moved
ORDER BY txid, id;
