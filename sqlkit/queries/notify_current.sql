SELECT pg_notify('{{.NotifyChannel}}', pg_current_xact_id()::text);
