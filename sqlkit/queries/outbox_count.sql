SELECT coalesce(sum(events), 0)::bigint FROM cdc.outbox;
