-- The outbox: one row per captured row change, written by the capture
-- triggers in the writer's own transaction, read by the relay.
--
-- The primary key is (txid, id) rather than id alone: the relay reads the
-- outbox transaction by transaction (see sqlkit/outbox.go), and one index that
-- serves both uniqueness and the relay's reads keeps the writers' cost down.
CREATE TABLE cdc.outbox (
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    txid        xid8        NOT NULL DEFAULT pg_current_xact_id(),
    changed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    schema_name text        NOT NULL,
    table_name  text        NOT NULL,
    action      text        NOT NULL
                CHECK (action IN ('insert', 'update', 'delete', 'truncate')),
    key         jsonb,
    data        jsonb,
    changes     json,   -- json, not jsonb: keeps "field", "old", "new" in that order
    PRIMARY KEY (txid, id)
);

COMMENT ON TABLE cdc.outbox IS
    'pgrelay: captured row changes, written by cdc.capture() and read by the relay';

-- Where a relay has got to. "next_txid" and "pending_*" describe which
-- transactions may still have undelivered rows; sqlkit/outbox.go explains the
-- protocol and why it is correct.
CREATE TABLE cdc.relay_cursor (
    name          text        PRIMARY KEY,
    next_txid     xid8        NOT NULL DEFAULT '0',
    pending_txids xid8[]      NOT NULL DEFAULT '{}',
    pending_after bigint[]    NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (cardinality(pending_txids) = cardinality(pending_after))
);

COMMENT ON TABLE cdc.relay_cursor IS
    'pgrelay: delivery position of each relay (one row per relay name)';

-- Whether any relay is waiting for a notification: relays nextval()
-- relay_wake_enter when they start waiting and relay_wake_leave when they
-- stop, and the capture trigger notifies only while enter is ahead of leave.
-- A busy relay reads the outbox again anyway, and NOTIFY serialises the
-- commits of every notifying transaction in the cluster, so skipping it
-- under load keeps concurrent writers fast. Sequences, because they are read
-- outside any snapshot: a REPEATABLE READ writer still sees the current state.
CREATE SEQUENCE cdc.relay_wake_enter;
CREATE SEQUENCE cdc.relay_wake_leave;
SELECT nextval('cdc.relay_wake_enter'), nextval('cdc.relay_wake_leave');
