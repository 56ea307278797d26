-- Deletes up to $2 outbox rows that changed more than $1 ago and that every
-- relay (every row of cdc.relay_cursor) has delivered: below its next_txid
-- and not among its pending transactions. With no relay recorded yet,
-- nothing is deleted.
DELETE FROM cdc.outbox
WHERE (txid, id) IN (
    SELECT o.txid, o.id
    FROM cdc.outbox o
    WHERE o.txid < (SELECT min(c.next_txid) FROM cdc.relay_cursor c)
      AND o.changed_at < now() - $1::interval
      AND NOT EXISTS (
          SELECT 1 FROM cdc.relay_cursor c
          WHERE o.txid = ANY (c.pending_txids)
      )
    ORDER BY o.txid, o.id
    LIMIT $2
);
