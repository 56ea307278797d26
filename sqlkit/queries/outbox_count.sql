SELECT count(*) FROM cdc.outbox;
