INSERT INTO cdc.relay_cursor AS c (name, next_txid, pending_txids, pending_after, updated_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (name) DO UPDATE
SET next_txid = excluded.next_txid,
    pending_txids = excluded.pending_txids,
    pending_after = excluded.pending_after,
    updated_at = excluded.updated_at;
