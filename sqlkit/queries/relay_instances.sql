-- For `relay status`: the relays of name $1 that registered and have not
-- expired, and the lease holder in any case, the active one first, with the
-- lease's state.
SELECT i.instance, i.host, i.pid, i.started_at, i.seen_at, i.expires_at > now() AS running,
       coalesce(c.lease_holder = i.instance AND c.lease_expires_at > now(), false) AS active,
       c.leader_since, c.lease_renewed_at, c.lease_expires_at
FROM cdc.relay_instance i
LEFT JOIN cdc.relay_cursor c ON c.name = i.name
WHERE i.name = $1 AND (i.expires_at > now() OR i.instance = c.lease_holder)
ORDER BY active DESC, i.started_at;
