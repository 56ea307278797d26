-- Leadership by lease. Relays sharing a name used to take turns under a
-- session advisory lock, which lives as long as the server-side backend that
-- took it: after a network partition that backend can outlive its relay by
-- hours (the server never hears that the client went away), and every relay
-- of that name, the original one reconnecting included, stood by behind it.
--
-- Now the active relay holds a lease on its cursor row: it renews
-- lease_expires_at every watchdog interval, and any relay of the name may
-- take the lease once it has expired, or once none of the holder's backends
-- is left. Each taking increments lease_token, and the holder writes its
-- cursor only where the token is still its own, so a relay that comes back
-- from a partition after another took over cannot move the cursor (fencing).
-- sqlkit/lease.go has the protocol.
ALTER TABLE cdc.relay_cursor
    ADD COLUMN lease_holder     text,
    ADD COLUMN lease_token      bigint      NOT NULL DEFAULT 0,
    ADD COLUMN leader_since     timestamptz,
    ADD COLUMN lease_renewed_at timestamptz,
    ADD COLUMN lease_expires_at timestamptz;

COMMENT ON COLUMN cdc.relay_cursor.lease_holder IS
    'pgrelay: the relay instance (cdc.relay_instance) delivering for this name, while lease_expires_at is ahead';
COMMENT ON COLUMN cdc.relay_cursor.lease_token IS
    'pgrelay: incremented whenever a relay takes the lease; the cursor is written only with the current token';

-- Every running relay, active or standing by, refreshed every watchdog
-- interval: what `relay status` shows, and the backends a new leader may end
-- (backend_pids, with their backend_start, so that a reused pid is never
-- mistaken for one of them).
CREATE TABLE cdc.relay_instance (
    name           text          NOT NULL,
    instance       text          NOT NULL,
    host           text          NOT NULL,
    pid            integer       NOT NULL,
    backend_pids   integer[]     NOT NULL DEFAULT '{}',
    backend_starts timestamptz[] NOT NULL DEFAULT '{}',
    -- LISTEN works on its connections: no connection pooler in between, so
    -- its backends are its own and may be ended.
    direct         boolean       NOT NULL DEFAULT false,
    started_at     timestamptz   NOT NULL DEFAULT now(),
    seen_at        timestamptz   NOT NULL DEFAULT now(),
    expires_at     timestamptz   NOT NULL,
    PRIMARY KEY (name, instance),
    CHECK (cardinality(backend_pids) = cardinality(backend_starts))
);

COMMENT ON TABLE cdc.relay_instance IS
    'pgrelay: running relays, active or standing by (see cdc.relay_cursor.lease_holder)';
