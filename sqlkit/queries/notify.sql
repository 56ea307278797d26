-- The watchdog's probe: a notification on the capture channel that the
-- relay's own LISTEN connection must receive.
SELECT pg_notify('cdc_events', $1::text);
