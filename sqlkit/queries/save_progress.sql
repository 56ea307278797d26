-- The lease holder (token $8) records that relay $1 has reached the cursor
-- $2..$7. No row updated: another relay took the lease since, and this one
-- must step down; its parked events are not recorded either
-- (park_event.sql checks the same token after this row is locked here).
UPDATE cdc.relay_cursor
SET mark = $2,
    next_txid = $3,
    pending_txids = $4,
    partial_txids = $5,
    partial_after = $6,
    straddle_txids = $7,
    updated_at = now()
WHERE name = $1 AND lease_token = $8;
