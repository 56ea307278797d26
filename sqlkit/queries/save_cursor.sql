INSERT INTO cdc.relay_cursor AS c (name, mark, next_txid, pending_txids, partial_txids, partial_after, straddle_txids, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, now())
ON CONFLICT (name) DO UPDATE
SET mark = excluded.mark,
    next_txid = excluded.next_txid,
    pending_txids = excluded.pending_txids,
    partial_txids = excluded.partial_txids,
    partial_after = excluded.partial_after,
    straddle_txids = excluded.straddle_txids,
    updated_at = excluded.updated_at;
