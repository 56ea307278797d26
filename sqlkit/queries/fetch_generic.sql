-- The fetch's plan does not depend on its arguments (each part reads one
-- index range), and planning it costs more than running a small batch: use
-- the prepared statement's generic plan instead of planning every batch.
SET LOCAL plan_cache_mode = force_generic_plan;
