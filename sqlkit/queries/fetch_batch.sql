-- The outbox rows holding the next $6 undelivered events, in delivery order
-- (sqlkit/cursor.go explains it): first the rest of the partial
-- transactions, in the cursor's order, then the candidate transactions in
-- the order of their last outbox id, each transaction's rows in id order.
-- $1 mark, $2 next_txid, $3 pending txids, $4 partial txids, $5 the event
--    id after which each partial transaction is undelivered, $6 the limit.
-- The last row may hold more events than are needed, and the first row of a
-- partial transaction may be a chunk whose first events were delivered (a
-- chunk with id c holds event ids c .. c+events-1, and events <= 1024): the
-- caller drops those. Event counts are counts of ids, which overstate
-- updates (two ids per row): a batch of updates may be smaller than $6.
--
-- Besides each row, the query returns what Advance needs: last_id (the last
-- outbox id of the row's transaction) and, on the first row only, the early
-- candidates' txids, the window's edge E (NULL when the window reached the
-- end of the outbox) and how many transactions were taken in all.
WITH
-- Candidates that need not have a row above the mark: the pending
-- transactions, and those from next_txid on with ids at or below the mark.
-- Only visible (committed) ones have rows; each with its last id.
early AS MATERIALIZED (
    SELECT t.txid, m.last_id
    FROM (
        SELECT p.txid FROM unnest($3::xid8[]) AS p(txid)
        UNION
        SELECT o.txid FROM cdc.outbox o WHERE o.txid >= $2 AND o.id <= $1
    ) t
    CROSS JOIN LATERAL (SELECT max(l.id) AS last_id FROM cdc.outbox l WHERE l.txid = t.txid) m
    WHERE m.last_id IS NOT NULL
      AND t.txid <> ALL ($4::xid8[])
      AND (m.last_id <= $1 OR t.txid = ANY ($3::xid8[]))
),
-- The window: the rows above the mark, in id order, up to about $6 events,
-- of transactions neither pending nor partial.
win AS MATERIALIZED (
    SELECT s.id, s.txid, s.upto
    FROM (
        SELECT r.id, r.txid, r.events,
               sum(r.events) OVER (ORDER BY r.id ROWS UNBOUNDED PRECEDING) AS upto
        FROM (
            SELECT o.id, o.txid, o.events
            FROM cdc.outbox o
            WHERE o.id > $1 AND o.txid <> ALL ($3::xid8[]) AND o.txid <> ALL ($4::xid8[])
            ORDER BY o.id
            LIMIT $6
        ) r
    ) s
    WHERE s.upto - s.events < $6
),
-- E, when the window stopped before the end of the outbox.
edge AS (
    SELECT CASE WHEN count(*) >= $6 OR max(w.upto) >= $6 THEN max(w.id) END AS e FROM win w
),
-- Every candidate whose last row is at or below E: those whose last row is
-- in the window, and the early ones.
chosen AS MATERIALIZED (
    SELECT c.txid, c.last_id
    FROM (
        SELECT w.txid, w.id AS last_id
        FROM win w
        WHERE NOT EXISTS (SELECT FROM cdc.outbox l WHERE l.txid = w.txid AND l.id > w.id)
        UNION ALL
        SELECT e.txid, e.last_id FROM early e
    ) c
    WHERE c.last_id <= coalesce((SELECT e FROM edge), c.last_id)
),
-- When none ends at or below E, the candidate that ends first, alone.
pick AS (
    SELECT f.txid, f.last_id
    FROM (
        (SELECT o.txid, o.id AS last_id
         FROM cdc.outbox o
         WHERE o.id > (SELECT e FROM edge)
           AND o.txid <> ALL ($3::xid8[]) AND o.txid <> ALL ($4::xid8[])
           AND NOT EXISTS (SELECT FROM cdc.outbox l WHERE l.txid = o.txid AND l.id > o.id)
         ORDER BY o.id
         LIMIT 1)
        UNION ALL
        SELECT e.txid, e.last_id FROM early e
    ) f
    WHERE NOT EXISTS (SELECT FROM chosen)
    ORDER BY f.last_id
    LIMIT 1
),
taken AS MATERIALIZED (
    SELECT c.txid, c.last_id FROM chosen c
    UNION ALL
    SELECT p.txid, p.last_id FROM pick p
)
SELECT w.id, w.txid, w.changed_at, w.schema_name, w.table_name, w.action, w.key, w.data, w.changes,
       w.events, w.key_columns, w.rows, w.old_rows, w.upto, w.last_id,
       CASE WHEN w.upto = w.todo THEN (SELECT array_agg(e.txid) FROM early e) END,
       CASE WHEN w.upto = w.todo THEN (SELECT e FROM edge) END,
       CASE WHEN w.upto = w.todo THEN (SELECT count(*) FROM taken) END
FROM (
    SELECT b.*, (sum(b.todo) OVER (ORDER BY b.grp, b.k, b.id ROWS UNBOUNDED PRECEDING))::bigint AS upto
    FROM (
        (SELECT 0 AS grp, p.ord AS k, m.last_id, o.*,
                o.id + o.events - 1 - greatest(o.id - 1, p.after_id) AS todo
         FROM unnest($4::xid8[], $5::bigint[]) WITH ORDINALITY AS p(txid, after_id, ord)
         CROSS JOIN LATERAL (SELECT max(l.id) AS last_id FROM cdc.outbox l WHERE l.txid = p.txid) m
         CROSS JOIN LATERAL (
             SELECT * FROM cdc.outbox o
             WHERE o.txid = p.txid AND o.id > p.after_id - 1024
               AND o.id + o.events - 1 > p.after_id
             ORDER BY o.txid, o.id
             LIMIT $6
         ) o)
        UNION ALL
        (SELECT 1, t.last_id, t.last_id, o.*, o.events
         FROM taken t
         CROSS JOIN LATERAL (
             SELECT * FROM cdc.outbox o
             WHERE o.txid = t.txid
             ORDER BY o.txid, o.id
             LIMIT $6
         ) o)
        ORDER BY 1, 2, id
        LIMIT $6
    ) b
) w
WHERE w.upto - w.todo < $6
ORDER BY w.grp, w.k, w.id;
