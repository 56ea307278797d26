-- Undelivered events for a cursor (same arguments and chunk arithmetic as
-- fetch_batch.sql): how many, and the change time of the oldest.
SELECT coalesce(sum(s.todo), 0)::bigint, min(s.changed_at)
FROM (
    SELECT o.id + o.events - 1 - greatest(o.id - 1, p.after_id) AS todo, o.changed_at
    FROM unnest($2::xid8[], $3::bigint[]) AS p(txid, after_id)
    JOIN cdc.outbox o ON o.txid = p.txid AND o.id > p.after_id - 1024
                     AND o.id + o.events - 1 > p.after_id
    UNION ALL
    SELECT o.events, o.changed_at FROM cdc.outbox o WHERE o.txid >= $1
) s;
