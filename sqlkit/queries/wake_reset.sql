-- Forgets waiting relays that went away without saying so, when the calling
-- relay is the only active one in this database: the only holder of a
-- pgrelay cursor lock (try_lock_cursor.sql). Until then writers merely
-- notify more than needed.
SELECT setval('cdc.relay_wake_leave', pg_sequence_last_value('cdc.relay_wake_enter'))
WHERE (SELECT count(*) FROM pg_locks l
       WHERE l.locktype = 'advisory' AND l.granted
         AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
         AND l.classid = 730587046 AND l.objsubid = 2) = 1;
