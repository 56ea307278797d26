-- Deletes outbox rows that changed more than $1 ago and that every relay
-- (every row of cdc.relay_cursor) has delivered: below its next_txid and
-- not among its pending transactions. It looks only at the oldest $2 rows
-- in (txid, id) order, so that each call costs the same however large the
-- outbox. With no relay recorded yet, nothing is deleted.
DELETE FROM cdc.outbox
WHERE (txid, id) IN (
    SELECT p.txid, p.id
    FROM (
        SELECT o.txid, o.id, o.changed_at
        FROM cdc.outbox o
        WHERE o.txid < (SELECT min(c.next_txid) FROM cdc.relay_cursor c)
        ORDER BY o.txid, o.id
        LIMIT $2
    ) p
    WHERE p.changed_at < now() - $1::interval
      AND NOT EXISTS (
          SELECT 1 FROM cdc.relay_cursor c
          WHERE p.txid = ANY (c.pending_txids)
      )
);
