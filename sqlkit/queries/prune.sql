-- Deletes outbox rows that changed more than $1 ago and that every relay
-- (every row of cdc.relay_cursor) has delivered. By the cursor's invariant
-- (sqlkit/cursor.go) a row is delivered for a relay when its transaction is
-- below next_txid, neither pending nor partial, and has no row above the
-- mark; taking the smallest mark and next_txid of all relays and every
-- relay's lists covers them all. It looks only at the oldest $2 rows in id
-- order, so that each call costs the same however large the outbox. With no
-- relay recorded yet, nothing is deleted. A relay passes its name and lease
-- token ($3, $4): once another relay took its lease, it deletes nothing.
-- NULL for both prunes without a lease (tools, tests).
WITH lim AS (
    SELECT min(c.mark) AS mark, min(c.next_txid) AS next_txid,
           array_agg(DISTINCT t) FILTER (WHERE t IS NOT NULL) AS busy
    FROM cdc.relay_cursor c
    LEFT JOIN LATERAL (SELECT unnest(c.pending_txids || c.partial_txids) AS t) u ON true
)
DELETE FROM cdc.outbox
WHERE id IN (
    SELECT p.id
    FROM (
        SELECT o.txid, o.id, o.changed_at
        FROM cdc.outbox o
        WHERE o.id <= (SELECT lim.mark FROM lim)
        ORDER BY o.id
        LIMIT $2
    ) p, lim
    WHERE p.changed_at < now() - $1::interval
      AND p.txid < lim.next_txid
      AND p.txid <> ALL (coalesce(lim.busy, '{}'))
      -- By the primary key only, as in fetch_batch.sql.
      AND (SELECT l.id FROM cdc.outbox l WHERE l.txid >= p.txid AND l.txid <= p.txid AND l.id > lim.mark
           ORDER BY l.txid, l.id LIMIT 1) IS NULL
      AND ($3::text IS NULL
           OR EXISTS (SELECT FROM cdc.relay_cursor f WHERE f.name = $3 AND f.lease_token = $4::bigint))
);
