-- Sets up one of the relay's connections, once connected and found to be
-- its own (set, not sent as startup parameters, which connection poolers
-- refuse; and not through a pooler in transaction mode at all, where the
-- settings would stick to server connections that other clients use). $1
-- ends a transaction left open for longer than the relay's timeout, so that
-- a backend whose client vanished mid-transaction cannot hold locks for
-- long; $2..$5 make the server's TCP keepalive and user timeout notice a
-- vanished client about as fast as the relay notices the server.
SELECT set_config('idle_in_transaction_session_timeout', $1, false),
       set_config('tcp_keepalives_idle', $2, false),
       set_config('tcp_keepalives_interval', $3, false),
       set_config('tcp_keepalives_count', $4, false),
       set_config('tcp_user_timeout', $5, false);
