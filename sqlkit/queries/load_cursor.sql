SELECT mark, next_txid, pending_txids, partial_txids, partial_after, straddle_txids
FROM cdc.relay_cursor
WHERE name = $1;
