-- The next undelivered outbox rows, in (txid, id) order, at most $4 of them.
-- $1: every transaction at or above this id is wholly undelivered.
-- $2, $3: transactions below $1 whose rows after id $3[i] are undelivered.
-- Both parts are (txid, id) index range scans. The pending part sorts before
-- the rest because every pending txid is below $1.
SELECT b.id, b.txid, b.changed_at, b.schema_name, b.table_name, b.action, b.key, b.data, b.changes
FROM (
    (SELECT o.id, o.txid, o.changed_at, o.schema_name, o.table_name, o.action, o.key, o.data, o.changes
     FROM unnest($2::xid8[], $3::bigint[]) AS p(txid, after_id)
     CROSS JOIN LATERAL (
         SELECT * FROM cdc.outbox o
         WHERE o.txid = p.txid AND o.id > p.after_id
         ORDER BY o.txid, o.id
         LIMIT $4
     ) o
     ORDER BY o.txid, o.id
     LIMIT $4)
    UNION ALL
    (SELECT o.id, o.txid, o.changed_at, o.schema_name, o.table_name, o.action, o.key, o.data, o.changes
     FROM cdc.outbox o
     WHERE o.txid >= $1
     ORDER BY o.txid, o.id
     LIMIT $4)
) b
ORDER BY b.txid, b.id
LIMIT $4;
