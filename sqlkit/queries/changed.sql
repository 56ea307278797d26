-- Whether a fetch made under a snapshot with xmax $1 and in-progress
-- transactions $2 might find something new now: a transaction at or above
-- $1 has ended (xmax moved past it), or one of $2 has. Every transaction
-- that becomes visible after that snapshot is one of those. Reads no table,
-- so a relay can ask it often; it errs towards yes (any write anywhere
-- moves xmax).
SELECT pg_snapshot_xmax(pg_current_snapshot()) > $1::xid8
    OR EXISTS (SELECT FROM unnest($2::xid8[]) AS t(txid)
               WHERE pg_xact_status(t.txid) IS DISTINCT FROM 'in progress');
