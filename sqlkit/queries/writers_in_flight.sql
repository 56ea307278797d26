-- Whether another session holds a write lock on cdc.outbox: a writer whose
-- rows are not visible yet, and which may have decided not to notify.
SELECT EXISTS (
    SELECT 1 FROM pg_locks l
    WHERE l.locktype = 'relation'
      AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
      AND l.relation = 'cdc.outbox'::regclass
      AND l.mode = 'RowExclusiveLock'
      AND l.pid <> pg_backend_pid()
);
