-- The live fetch: what fetch_batch.sql returns, for the cursor a relay that
-- keeps up almost always has (no partial and no straddling transactions),
-- in a plan half the size. fetch_batch.sql's generic plan costs more to
-- start than to run when a batch holds a few transactions, and a relay
-- that keeps up reads such batches, one per notification or, under load,
-- one every few milliseconds: starting that plan was the largest part of
-- the relay's time between a notification and the event's delivery
-- (sqlkit.Fetch, and internal/bench/tried.md).
--
-- It gives the same rows and summary as fetch_batch.sql does, with the
-- same columns, where these hold (Fetch asks for it only when the first
-- does): the cursor has no partial and no straddling transactions, and
-- the window (the rows above the mark, but for pending transactions')
-- holds fewer than $5 rows, so that it reaches the end of the outbox.
-- Then every transaction in the window has all its rows above the mark
-- there, and so ends there: each is taken, with no probe of the primary
-- key, no edge and no pick; the fresh ones among them (from next_txid on,
-- with rows at or below the mark too, as in fetch_batch.sql) also with
-- those rows. Otherwise the summary row comes with grp 3 and no other row,
-- and Fetch reads with fetch_batch.sql instead.
--
-- $1 mark, $2 next_txid, $3 pending txids, $4 the limit, $5 how many rows
-- the window reads.
WITH
-- As in fetch_batch.sql: the transactions from next_txid on with rows at
-- or below the mark.
fresh AS MATERIALIZED (
    SELECT DISTINCT o.txid
    FROM cdc.outbox o
    WHERE o.txid >= $2 AND o.txid < pg_snapshot_xmax(pg_current_snapshot()) AND o.id + 0 <= $1
      AND $1 > 0
),
-- The candidates that need not have a row above the mark, as "early" in
-- fetch_batch.sql: the visible pending transactions, and the fresh ones
-- whose rows are all at or below the mark; each with its last id.
early AS MATERIALIZED (
    SELECT t.txid, m.last_id
    FROM (
        SELECT p.txid FROM unnest($3::xid8[]) AS p(txid)
        UNION
        SELECT f.txid FROM fresh f
    ) t
    CROSS JOIN LATERAL (SELECT (SELECT l.id FROM cdc.outbox l WHERE l.txid >= t.txid AND l.txid <= t.txid
                                ORDER BY l.txid DESC, l.id DESC LIMIT 1) AS last_id) m
    WHERE m.last_id IS NOT NULL
      AND (m.last_id <= $1 OR t.txid = ANY ($3::xid8[]))
),
win AS MATERIALIZED (
    SELECT o.*
    FROM cdc.outbox o
    WHERE o.id > $1 AND o.txid <> ALL ($3::xid8[])
    ORDER BY o.id
    LIMIT $5
),
-- Whether fetch_batch.sql must read instead: the window stopped at its
-- size.
live AS (
    SELECT (SELECT count(*) FROM win) < $5 AS ok
),
wtx AS MATERIALIZED (
    SELECT w.txid, min(w.id) AS first_id, max(w.id) AS last_id
    FROM win w
    GROUP BY w.txid
)
SELECT 1 AS grp, n.last_id, n.last_id, w.id, w.txid, w.changed_at, w.schema_name, w.table_name, w.action, w.key, w.data, w.changes, w.events, w.key_columns, w.rows, w.old_rows, NULL::xid8[], NULL::bigint, NULL::bigint, NULL::bigint[], NULL::xid8[], NULL::xid8[], NULL::bigint[]
FROM win w
JOIN wtx n ON n.txid = w.txid
WHERE (SELECT ok FROM live)
UNION ALL
-- The rows at or below the mark of the window's fresh transactions ("+ 0"
-- as in fetch_batch.sql).
SELECT 1, n.last_id, n.last_id, o.id, o.txid, o.changed_at, o.schema_name, o.table_name, o.action, o.key, o.data, o.changes, o.events, o.key_columns, o.rows, o.old_rows, NULL::xid8[], NULL::bigint, NULL::bigint, NULL::bigint[], NULL::xid8[], NULL::xid8[], NULL::bigint[]
FROM wtx n
CROSS JOIN LATERAL (SELECT * FROM cdc.outbox o WHERE o.txid >= n.txid AND o.txid <= n.txid AND o.id + 0 <= $1
                    ORDER BY o.txid, o.id) o
WHERE n.txid IN (SELECT f.txid FROM fresh f) AND (SELECT ok FROM live)
UNION ALL
-- The early candidates' rows, up to $4 rows each (enough for $4 events);
-- the caller cuts the batch at $4 events.
SELECT 1, e.last_id, e.last_id, o.id, o.txid, o.changed_at, o.schema_name, o.table_name, o.action, o.key, o.data, o.changes, o.events, o.key_columns, o.rows, o.old_rows, NULL::xid8[], NULL::bigint, NULL::bigint, NULL::bigint[], NULL::xid8[], NULL::xid8[], NULL::bigint[]
FROM early e
CROSS JOIN LATERAL (
    SELECT * FROM cdc.outbox o
    WHERE o.txid >= e.txid AND o.txid <= e.txid
    ORDER BY o.txid, o.id
    LIMIT $4
) o
WHERE (SELECT ok FROM live)
UNION ALL
-- The summary, as fetch_batch.sql's: no edge, every candidate taken, and
-- as those that may straddle the next mark the fresh ones (the window's
-- come with their first id).
SELECT CASE WHEN (SELECT ok FROM live) THEN 2 ELSE 3 END, 0, 0, 0, '0', 'epoch', '', '', '', NULL, NULL, NULL, 0, NULL, NULL, NULL,
       (SELECT array_agg(e.txid) FROM early e), NULL::bigint,
       (SELECT count(*) FROM wtx) + (SELECT count(*) FROM early),
       (SELECT ARRAY[count(*), coalesce(sum(w.events), 0)] FROM win w),
       ARRAY(SELECT f.txid FROM fresh f),
       l.txids, l.firsts
FROM (SELECT array_agg(g.txid) AS txids, array_agg(g.first_id) AS firsts FROM wtx g) l;
