-- Events in the outbox, delivered or not, counted as in backlog.sql.
SELECT coalesce(sum(CASE WHEN old_rows IS NULL THEN events ELSE events / 2 END), 0)::bigint FROM cdc.outbox;
