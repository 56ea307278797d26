-- What has committed by now.
SELECT pg_current_snapshot()::text;
