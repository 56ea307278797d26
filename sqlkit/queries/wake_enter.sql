-- This relay starts waiting for notifications (see 001_outbox.sql).
SELECT nextval('cdc.relay_wake_enter');
