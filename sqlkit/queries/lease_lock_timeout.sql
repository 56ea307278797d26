-- Taking the lease waits for the cursor row's lock at most $1: a backend of
-- the previous holder cut off in the middle of a batch may hold it (the
-- server arms no idle timeout inside a pipeline), and the taker ends those
-- backends before trying again.
SELECT set_config('lock_timeout', $1, true);
