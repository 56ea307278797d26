-- The outbox rows holding the next $4 undelivered events, in (txid, id)
-- order. The last row may hold more events than are needed, and the first row
-- of a pending transaction may be a chunk whose first events were delivered
-- (a chunk with id c holds event ids c .. c+events-1, and events <= 1024):
-- the caller drops those. Event counts here are counts of ids, which
-- overstate updates (two ids per row): a batch of updates may be smaller
-- than $4.
-- $1: every transaction at or above this id is wholly undelivered.
-- $2, $3: transactions below $1 whose events after id $3[i] are undelivered.
-- Both parts are (txid, id) index range scans. The pending part sorts before
-- the rest because every pending txid is below $1. Every row holds at least
-- one undelivered event ("todo"), so the first $4 rows are enough; the rows
-- past the limit are dropped before their (possibly large, TOASTed) JSON is
-- read.
SELECT w.id, w.txid, w.changed_at, w.schema_name, w.table_name, w.action, w.key, w.data, w.changes,
       w.events, w.key_columns, w.rows, w.old_rows, w.upto
FROM (
    SELECT b.*, (sum(b.todo) OVER (ORDER BY b.txid, b.id ROWS UNBOUNDED PRECEDING))::bigint AS upto
    FROM (
        (SELECT o.*, o.id + o.events - 1 - greatest(o.id - 1, p.after_id) AS todo
         FROM unnest($2::xid8[], $3::bigint[]) AS p(txid, after_id)
         CROSS JOIN LATERAL (
             SELECT * FROM cdc.outbox o
             WHERE o.txid = p.txid AND o.id > p.after_id - 1024
               AND o.id + o.events - 1 > p.after_id
             ORDER BY o.txid, o.id
             LIMIT $4
         ) o
         ORDER BY o.txid, o.id
         LIMIT $4)
        UNION ALL
        (SELECT o.*, o.events AS todo
         FROM cdc.outbox o
         WHERE o.txid >= $1
         ORDER BY o.txid, o.id
         LIMIT $4)
    ) b
    ORDER BY b.txid, b.id
    LIMIT $4
) w
WHERE w.upto - w.todo < $4
ORDER BY w.txid, w.id;
