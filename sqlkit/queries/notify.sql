-- The watchdog's probe: a notification on the capture channel that the
-- relay's own LISTEN connection must receive.
SELECT pg_notify('{{.NotifyChannel}}', $1::text);
