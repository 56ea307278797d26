-- The outbox rows that hold the next $6 undelivered events, with what the
-- caller needs to put them in delivery order (sqlkit/cursor.go explains
-- it): first the rest of the partial transactions, in the cursor's order
-- ("grp" 0, "k" the position in that order), then the candidate
-- transactions by their last outbox id ("grp" 1, "k" = "last_id"), each
-- transaction's rows by id. The rows come in no particular order: the
-- caller sorts them by (grp, k, id) and cuts the batch at $6 events, which
-- costs less than the same in SQL. The rows past the cut are few: the
-- window is sized to the batch, and each group of transactions (partial,
-- ending in the window, early) is cut here at $6 events already, so that
-- large chunks past the batch's end are never sent.
-- $1 mark, $2 next_txid, $3 pending txids, $4 partial txids, $5 the event
--    id after which each partial transaction is undelivered, $6 the limit,
--    $7 how many rows the window reads (see Cursor.scan), $8 the
--    transactions that may straddle the mark (Cursor.Straddle).
-- The first row of a partial transaction may be a chunk whose first events
-- were delivered (a chunk with id c holds event ids c .. c+events-1, and
-- events <= {{.IDStep}}): the caller drops those. Event counts are counts of
-- ids, which overstate updates (two ids per row): a batch of updates may be
-- smaller than $6.
--
-- One more row, with grp 2 and the outbox columns empty, carries what Advance
-- needs besides: the early candidates' txids, the window's edge E (NULL
-- when the window reached the end of the outbox), how many candidate
-- transactions were taken, how many rows and events the window held, and
-- the transactions that may straddle the next mark.
--
-- A transaction's rows are read as "txid >= x AND txid <= x ORDER BY txid,
-- id", never "txid = x": only the primary key (txid, id) gives that order,
-- so that no plan can read them by the id index and filter on txid, which
-- reads every row above. The planner chose exactly that, comparing costs it
-- could not tell apart, when the outbox's statistics said it was empty (an
-- outbox analysed while a relay kept it empty): a TPC-B backlog then cost
-- 140 ms a batch instead of a few.
WITH
-- The transactions from next_txid on with rows at or below the mark: only
-- the rows from next_txid on are read (a few, written since the last
-- fetch). "+ 0" keeps the delivered rows below the mark out of it, and the
-- upper bound (nothing at or above the snapshot's xmax is visible anyway)
-- makes it a range the generic plan reads by index, where a lone lower
-- bound had it read the whole outbox.
fresh AS MATERIALIZED (
    SELECT DISTINCT o.txid
    FROM cdc.outbox o
    WHERE o.txid >= $2 AND o.txid < pg_snapshot_xmax(pg_current_snapshot()) AND o.id + 0 <= $1
      AND $1 > 0 -- nothing is below the zero cursor's mark: no scan at all
),
-- Candidates that need not have a row above the mark: the pending
-- transactions, and the fresh ones. Only visible (committed) ones have
-- rows; each with its last id.
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
      AND t.txid <> ALL ($4::xid8[])
      AND (m.last_id <= $1 OR t.txid = ANY ($3::xid8[]))
),
-- The window: the next $7 rows above the mark, in id order, of
-- transactions neither pending nor partial. $7 is sized to hold about $6
-- events (see Cursor.scan); the batch is cut at $6 events anyway.
win AS MATERIALIZED (
    SELECT o.ctid, o.id, o.txid, o.events
    FROM cdc.outbox o
    WHERE o.id > $1 AND o.txid <> ALL ($3::xid8[]) AND o.txid <> ALL ($4::xid8[])
    ORDER BY o.id
    LIMIT $7
),
-- E, when the window stopped before the end of the outbox; and how many
-- rows and events it holds.
edge AS (
    SELECT CASE WHEN count(*) >= $7 THEN max(w.id) END AS e,
           count(*) AS rows, coalesce(sum(w.events), 0) AS events
    FROM win w
),
-- The window's transactions: their first and last row there, and events.
wtx AS MATERIALIZED (
    SELECT w.txid, min(w.id) AS first_id, max(w.id) AS last_id, sum(w.events)::int AS events
    FROM win w
    GROUP BY w.txid
),
-- Those whose last row is in the window.
ending AS MATERIALIZED (
    SELECT l.txid, l.last_id, l.events
    FROM wtx l
    -- A probe of the primary key per transaction (a subquery, not a
    -- join): the generic plan, made when the outbox was small, would
    -- otherwise join against the whole outbox.
    WHERE (SELECT o.id FROM cdc.outbox o WHERE o.txid >= l.txid AND o.txid <= l.txid AND o.id > l.last_id
           ORDER BY o.txid, o.id LIMIT 1) IS NULL
),
-- Those whose rows are sent: in order of their last id, while fewer than $6
-- events come before them (counting only their rows in the window), so
-- that large chunks past the batch's end are not read.
sent AS (
    SELECT c.txid, c.last_id
    FROM (SELECT n.*, sum(n.events) OVER (ORDER BY n.last_id ROWS UNBOUNDED PRECEDING) AS upto
          FROM ending n) c
    WHERE c.upto - c.events < $6
),
-- Every candidate whose last row is at or below E: those, and the early
-- ones.
chosen AS MATERIALIZED (
    SELECT n.txid, n.last_id, false AS early FROM ending n
    UNION ALL
    SELECT e.txid, e.last_id, true
    FROM early e
    WHERE e.last_id <= coalesce((SELECT e FROM edge), e.last_id)
),
-- When none ends at or below E, the candidate that ends first, alone.
pick AS (
    SELECT f.txid, f.last_id
    FROM (
        (SELECT o.txid, o.id AS last_id
         FROM cdc.outbox o
         WHERE o.id > (SELECT e FROM edge)
           AND o.txid <> ALL ($3::xid8[]) AND o.txid <> ALL ($4::xid8[])
           AND (SELECT l.id FROM cdc.outbox l WHERE l.txid >= o.txid AND l.txid <= o.txid AND l.id > o.id
                ORDER BY l.txid, l.id LIMIT 1) IS NULL
         ORDER BY o.id
         LIMIT 1)
        UNION ALL
        SELECT e.txid, e.last_id FROM early e
    ) f
    WHERE NOT EXISTS (SELECT FROM chosen)
    ORDER BY f.last_id
    LIMIT 1
)
,
-- The partial transactions' undelivered rows, up to $6 events.
partial AS (
    SELECT r.*
    FROM (
        SELECT p.ord AS k, m.last_id, o.id, o.txid, o.changed_at, o.schema_name, o.table_name, o.action, o.key, o.data, o.changes, o.events, o.key_columns, o.rows, o.old_rows,
               sum(o.id + o.events - 1 - greatest(o.id - 1, p.after_id))
                   OVER (ORDER BY p.ord, o.id ROWS UNBOUNDED PRECEDING) AS upto,
               o.id + o.events - 1 - greatest(o.id - 1, p.after_id) AS todo
        FROM unnest($4::xid8[], $5::bigint[]) WITH ORDINALITY AS p(txid, after_id, ord)
        CROSS JOIN LATERAL (SELECT (SELECT l.id FROM cdc.outbox l WHERE l.txid >= p.txid AND l.txid <= p.txid
                                    ORDER BY l.txid DESC, l.id DESC LIMIT 1) AS last_id) m
        CROSS JOIN LATERAL (
            SELECT * FROM cdc.outbox o
            WHERE o.txid >= p.txid AND o.txid <= p.txid AND o.id > p.after_id - {{.IDStep}}
              AND o.id + o.events - 1 > p.after_id
            ORDER BY o.txid, o.id
            LIMIT $6
        ) o
    ) r
    WHERE r.upto - r.todo < $6
),
-- The rows of the early candidates taken, or of the one picked, up to $6
-- events.
others AS (
    SELECT r.*
    FROM (
        SELECT t.last_id, o.id, o.txid, o.changed_at, o.schema_name, o.table_name, o.action, o.key, o.data, o.changes, o.events, o.key_columns, o.rows, o.old_rows,
               sum(o.events) OVER (ORDER BY t.last_id, o.id ROWS UNBOUNDED PRECEDING) AS upto
        FROM (SELECT c.txid, c.last_id FROM chosen c WHERE c.early
              UNION ALL SELECT p.txid, p.last_id FROM pick p) t
        CROSS JOIN LATERAL (
            SELECT * FROM cdc.outbox o
            WHERE o.txid >= t.txid AND o.txid <= t.txid
            ORDER BY o.txid, o.id
            LIMIT $6
        ) o
    ) r
    WHERE r.upto - r.events < $6
)
SELECT 0 AS grp, r.k, r.last_id, r.id, r.txid, r.changed_at, r.schema_name, r.table_name, r.action, r.key, r.data, r.changes, r.events, r.key_columns, r.rows, r.old_rows, NULL::xid8[], NULL::bigint, NULL::bigint, NULL::bigint[], NULL::xid8[], NULL::xid8[], NULL::bigint[]
FROM partial r
UNION ALL
-- The rows of the transactions ending in the window: those in it, and those
-- at or below the mark (of transactions that straddle it).
SELECT 1, n.last_id, n.last_id, o.id, o.txid, o.changed_at, o.schema_name, o.table_name, o.action, o.key, o.data, o.changes, o.events, o.key_columns, o.rows, o.old_rows, NULL::xid8[], NULL::bigint, NULL::bigint, NULL::bigint[], NULL::xid8[], NULL::xid8[], NULL::bigint[]
FROM sent n
JOIN win w ON w.txid = n.txid
JOIN cdc.outbox o ON o.ctid = w.ctid
UNION ALL
SELECT 1, n.last_id, n.last_id, o.id, o.txid, o.changed_at, o.schema_name, o.table_name, o.action, o.key, o.data, o.changes, o.events, o.key_columns, o.rows, o.old_rows, NULL::xid8[], NULL::bigint, NULL::bigint, NULL::bigint[], NULL::xid8[], NULL::xid8[], NULL::bigint[]
FROM sent n
-- Each transaction's rows by its txid (a lookup per transaction; "+ 0"
-- keeps it off the id index), never all the delivered rows below the mark.
CROSS JOIN LATERAL (SELECT * FROM cdc.outbox o WHERE o.txid >= n.txid AND o.txid <= n.txid AND o.id + 0 <= $1
                    ORDER BY o.txid, o.id) o
WHERE n.txid = ANY ($8::xid8[]) OR n.txid IN (SELECT f.txid FROM fresh f)
UNION ALL
SELECT 1, r.last_id, r.last_id, r.id, r.txid, r.changed_at, r.schema_name, r.table_name, r.action, r.key, r.data, r.changes, r.events, r.key_columns, r.rows, r.old_rows, NULL::xid8[], NULL::bigint, NULL::bigint, NULL::bigint[], NULL::xid8[], NULL::xid8[], NULL::bigint[]
FROM others r
UNION ALL
SELECT 2, 0, 0, 0, '0', 'epoch', '', '', '', NULL, NULL, NULL, 0, NULL, NULL, NULL,
       (SELECT array_agg(e.txid) FROM early e), (SELECT e FROM edge),
       (SELECT count(*) FROM chosen) + (SELECT count(*) FROM pick),
       (SELECT ARRAY[rows, events] FROM edge),
       -- Those that may straddle the next mark: with rows at or below it
       -- and above it, not delivered, neither pending nor partial. They
       -- are among those straddling the mark, the fresh ones, and, when
       -- one was picked beyond E, those with rows between E and it
       -- (sqlkit/cursor.go); and the window's, given with their first id
       -- there, of which Advance keeps those below the new mark.
       ARRAY(SELECT f.txid FROM fresh f
             UNION SELECT unnest($8::xid8[])
             UNION SELECT o.txid FROM cdc.outbox o
                   WHERE o.id > (SELECT e FROM edge) AND o.id < (SELECT p.last_id FROM pick p)),
       l.txids, l.firsts
FROM (SELECT array_agg(g.txid) AS txids, array_agg(g.first_id) AS firsts FROM wtx g) l;
