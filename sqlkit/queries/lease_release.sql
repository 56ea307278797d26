-- Instance $2 stops: it forgets its registration and, if it still holds the
-- lease of relay name $1 with token $3, lets it expire now, so that a
-- standby takes over at its next try instead of after the expiry.
WITH bye AS (
    DELETE FROM cdc.relay_instance i WHERE i.name = $1 AND i.instance = $2
)
UPDATE cdc.relay_cursor
SET lease_expires_at = now()
WHERE name = $1 AND lease_token = $3 AND lease_holder = $2;
