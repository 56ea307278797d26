-- This relay stops waiting for notifications.
SELECT nextval('cdc.relay_wake_leave');
