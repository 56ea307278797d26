-- Forgets waiting relays that went away without saying so, when the calling
-- relay (name $1, lease token $2) is the only active one in this database:
-- no other relay holds an unexpired lease. Until then writers merely notify
-- more than needed. A relay whose lease expired forgets its own waiting
-- state instead of undoing it (relay/lease.go), since this may have reset it.
SELECT setval('cdc.relay_wake_leave', pg_sequence_last_value('cdc.relay_wake_enter'))
WHERE NOT EXISTS (
    SELECT FROM cdc.relay_cursor c
    WHERE c.lease_expires_at > now() AND NOT (c.name = $1 AND c.lease_token = $2));
