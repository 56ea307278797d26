-- One relay at a time per cursor name: a session advisory lock, released
-- when the connection ends, so a standby takes over when the active relay
-- goes away. The first key, 730587046, marks pgrelay's locks (wake_reset.sql
-- counts them).
SELECT pg_try_advisory_lock(730587046, hashtext('pgrelay cursor ' || $1::text));
