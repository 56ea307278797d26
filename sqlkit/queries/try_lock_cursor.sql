-- One relay at a time per cursor name: a session advisory lock, released
-- when the connection ends, so a standby takes over when the active relay
-- goes away.
SELECT pg_try_advisory_lock(hashtextextended('pgrelay cursor ' || $1::text, 0));
