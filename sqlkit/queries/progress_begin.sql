-- Recording progress: the relay's own bookkeeping, so the commit need not
-- wait for the WAL flush. If the server crashes first, the relay starts from
-- an older position and delivers a few events again, which at-least-once
-- delivery allows, and never skips one.
BEGIN;
