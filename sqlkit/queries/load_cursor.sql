SELECT mark, next_txid, pending_txids, partial_txids, partial_after
FROM cdc.relay_cursor
WHERE name = $1;
