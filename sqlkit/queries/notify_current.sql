SELECT pg_notify('cdc_events', pg_current_xact_id()::text);
