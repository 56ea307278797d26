-- For the rest of the caller's transaction, no sequential scans where an
-- index serves: the status and backlog queries read the undelivered part of
-- the outbox by index ranges, and statistics taken while the outbox was
-- near empty would have them read all of it (see fetch_generic.sql).
-- And no JIT: a table no index can serve keeps its sequential scan at a
-- cost PostgreSQL inflates to 10^10, which would compile every such query
-- (80 ms for a one-row table, measured) before running it.
SELECT set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true);
