-- Undelivered events for a cursor, per table (for custom events: schema ''
-- and the channel), with the same arguments and chunk arithmetic as
-- fetch_batch.sql: how many, and the change time of the oldest. By the
-- cursor's invariant (sqlkit/cursor.go) they are the events of the
-- transactions that are pending, start at or after next_txid, or have a row
-- above the mark, and those after the recorded event of the partial ones.
-- With $6, a snapshot, only the events of transactions it sees committed
-- count. Updates count one event per updated row, though a row whose key changed
-- gives two and a row that did not change none.
SELECT s.schema_name, s.table_name,
       sum(CASE WHEN s.updates THEN (s.todo + 1) / 2 ELSE s.todo END)::bigint, min(s.changed_at)
FROM (
    -- Each transaction's rows by the primary key, probed one transaction
    -- at a time ("txid >= x AND txid <= x ORDER BY txid, id", as in
    -- fetch_batch.sql): with statistics that misjudge the outbox, a join
    -- of the few transactions against it read every row.
    SELECT o.id + o.events - 1 - greatest(o.id - 1, p.after_id) AS todo,
           o.old_rows IS NOT NULL AS updates, o.changed_at, o.schema_name, o.table_name
    FROM unnest($4::xid8[], $5::bigint[]) AS p(txid, after_id)
    CROSS JOIN LATERAL (
        SELECT o.* FROM cdc.outbox o
        WHERE o.txid >= p.txid AND o.txid <= p.txid AND o.id > p.after_id - {{.IDStep}}
          AND o.id + o.events - 1 > p.after_id
        ORDER BY o.txid, o.id) o
    WHERE $6::pg_snapshot IS NULL OR pg_visible_in_snapshot(p.txid, $6::pg_snapshot)
    UNION ALL
    SELECT o.events, o.old_rows IS NOT NULL, o.changed_at, o.schema_name, o.table_name
    FROM (SELECT unnest($3::xid8[]) AS txid
          UNION SELECT a.txid FROM cdc.outbox a WHERE a.id > $1
          UNION SELECT a.txid FROM cdc.outbox a WHERE a.txid >= $2) t
    CROSS JOIN LATERAL (
        SELECT o.* FROM cdc.outbox o
        WHERE o.txid >= t.txid AND o.txid <= t.txid
        ORDER BY o.txid, o.id) o
    WHERE t.txid <> ALL ($4::xid8[])
      AND ($6::pg_snapshot IS NULL OR pg_visible_in_snapshot(t.txid, $6::pg_snapshot))
) s
GROUP BY s.schema_name, s.table_name
ORDER BY s.schema_name, s.table_name;
