-- Recording progress runs in one transaction (settings in
-- progress_async.sql).
BEGIN;
