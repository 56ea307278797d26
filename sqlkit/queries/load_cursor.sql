SELECT next_txid, pending_txids, pending_after_event
FROM cdc.relay_cursor
WHERE name = $1;
