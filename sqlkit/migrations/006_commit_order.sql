-- Commit-order delivery. The relay used to deliver the transactions it found
-- in txid order, but a transaction takes its txid at its first write and may
-- commit long after another that took a larger one: T2 takes its txid,
-- waits on a row lock that T1 holds, and commits after T1. Consumers that
-- applied those events in arrival order kept T2's older value.
--
-- Outbox ids, unlike txids, are taken when the capture trigger runs, after
-- the statement's own writes: a writer that waited for another transaction
-- (a row lock, a unique or foreign-key check) takes its ids after that
-- transaction committed. The relay now delivers transactions in the order of
-- their last outbox id, and its cursor records how far it got in that order
-- (sqlkit/cursor.go has the argument). Reading transactions in that order
-- needs an index on id alone.
CREATE UNIQUE INDEX outbox_id ON cdc.outbox (id);

-- The argument needs ids that grow in the order they are taken, across
-- sessions: a sequence that caches values per session would hand out ids out
-- of order. CACHE 1 is the default; it is set here because correctness
-- depends on it.
ALTER TABLE cdc.outbox ALTER COLUMN id SET CACHE 1;

-- The cursor: "mark" is the last outbox id of the last transaction delivered
-- in order, "partial_*" the transactions delivered in part (at most one in
-- steady state), "pending_txids" the transactions that may commit with ids
-- below the mark, "straddle_txids" committed ones with rows on both sides
-- of it. next_txid keeps its meaning: transactions from there on are wholly
-- undelivered.
ALTER TABLE cdc.relay_cursor
    DROP CONSTRAINT relay_cursor_check, -- pending_txids and pending_after_event in step
    ADD COLUMN mark          bigint   NOT NULL DEFAULT 0,
    ADD COLUMN partial_txids xid8[]   NOT NULL DEFAULT '{}',
    ADD COLUMN partial_after bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN straddle_txids xid8[]  NOT NULL DEFAULT '{}',
    ADD CONSTRAINT relay_cursor_partial_check CHECK (cardinality(partial_txids) = cardinality(partial_after));

-- Cursors saved by an older relay: every transaction below next_txid was
-- delivered, except the pending ones (wholly, or after pending_after_event).
-- So everything at or below the largest id of those transactions is
-- delivered but for the pending ones, and the transactions from next_txid on
-- are found again by their txid whatever their ids. Pending transactions
-- delivered in part become partial, in txid order, as the old relay would
-- have gone on. No transaction below next_txid has a row above the new
-- mark, so none straddles it.
UPDATE cdc.relay_cursor c
SET mark = coalesce((SELECT max(o.id) FROM cdc.outbox o WHERE o.txid < c.next_txid), 0),
    partial_txids = coalesce((SELECT array_agg(p.txid ORDER BY p.txid)
                              FROM unnest(c.pending_txids, c.pending_after_event) AS p(txid, after_id)
                              WHERE p.after_id > 0), '{}'),
    partial_after = coalesce((SELECT array_agg(p.after_id ORDER BY p.txid)
                              FROM unnest(c.pending_txids, c.pending_after_event) AS p(txid, after_id)
                              WHERE p.after_id > 0), '{}'),
    pending_txids = coalesce((SELECT array_agg(p.txid ORDER BY p.txid)
                              FROM unnest(c.pending_txids, c.pending_after_event) AS p(txid, after_id)
                              WHERE p.after_id <= 0), '{}');

ALTER TABLE cdc.relay_cursor DROP COLUMN pending_after_event;

COMMENT ON COLUMN cdc.relay_cursor.mark IS
    'pgrelay: every committed transaction with an outbox id above this is wholly undelivered (sqlkit/cursor.go)';
COMMENT ON COLUMN cdc.relay_cursor.partial_txids IS
    'pgrelay: transactions delivered in part, up to the event ids in partial_after; delivered first';
COMMENT ON COLUMN cdc.relay_cursor.straddle_txids IS
    'pgrelay: committed transactions that may have rows both at or below mark and above it';
COMMENT ON COLUMN cdc.relay_cursor.pending_txids IS
    'pgrelay: transactions that may still commit with outbox ids at or below mark';
