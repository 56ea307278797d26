-- Recording progress is the relay's own bookkeeping, so the commit need not
-- wait for the WAL flush: if the server crashes first, the relay starts from
-- an older position and delivers a few events again, which at-least-once
-- delivery allows, and never skips one. And the transaction locks the
-- cursor row: should the client vanish before the batch's COMMIT arrives,
-- the server ends it after $1 (the relay's own deadline) rather than let it
-- block a standby's takeover. Local settings, so safe behind poolers.
SELECT set_config('synchronous_commit', 'off', true),
       set_config('idle_in_transaction_session_timeout', $1, true);
