-- Undelivered events for a cursor (same arguments as fetch_batch.sql): how
-- many, and the change time of the oldest.
SELECT count(*), min(s.changed_at)
FROM (
    SELECT o.changed_at
    FROM unnest($2::xid8[], $3::bigint[]) AS p(txid, after_id)
    JOIN cdc.outbox o ON o.txid = p.txid AND o.id > p.after_id
    UNION ALL
    SELECT o.changed_at FROM cdc.outbox o WHERE o.txid >= $1
) s;
