-- The holder of token $2 extends the lease of relay name $1 to $3 from now.
-- No row updated: another relay took the lease.
UPDATE cdc.relay_cursor
SET lease_renewed_at = now(), lease_expires_at = now() + $3::interval
WHERE name = $1 AND lease_token = $2;
