-- The fetch's plan does not depend on its arguments (each part reads one
-- index range), and planning it costs more than running a small batch: use
-- the prepared statement's generic plan instead of planning every batch.
--
-- And never a sequential scan of the outbox: every part of the fetch is an
-- index range or a probe per transaction, which is right whatever the
-- table's statistics say. They mislead: an outbox that a relay keeps near
-- empty is analysed near empty (by autovacuum, or an operator's ANALYZE),
-- and the plan then made had a TPC-B backlog re-read by sequential scans
-- once per transaction, 4 s per batch, so that the relay fell further
-- behind with every batch (sqlkit's TestFetchAfterAnalyzeOfEmptyOutbox).
--
-- And no JIT: it pays only for long queries, and a plan that keeps a
-- sequential scan despite enable_seqscan (where no index serves) is costed
-- at 10^10, which would have every fetch compiled (tens of ms) first.
SELECT set_config('plan_cache_mode', 'force_generic_plan', true),
       set_config('enable_seqscan', 'off', true),
       set_config('jit', 'off', true);
