INSERT INTO cdc.relay_cursor AS c (name, next_txid, pending_txids, pending_after_event, updated_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (name) DO UPDATE
SET next_txid = excluded.next_txid,
    pending_txids = excluded.pending_txids,
    pending_after_event = excluded.pending_after_event,
    updated_at = excluded.updated_at;
