-- Events a handler refused permanently (relay.Permanent) more than the
-- allowed number of times. They are kept here, with the error, so that the
-- rest of the stream keeps flowing and nothing is silently dropped;
-- `relay retry-failed` puts them back into the outbox.
CREATE TABLE cdc.failed_event (
    relay_name  text        NOT NULL,
    id          bigint      NOT NULL,
    txid        xid8        NOT NULL,
    changed_at  timestamptz NOT NULL,
    schema_name text        NOT NULL,
    table_name  text        NOT NULL,
    action      text        NOT NULL,
    key         jsonb,
    data        jsonb,
    changes     json,
    handler     text        NOT NULL,
    error       text        NOT NULL,
    attempts    int         NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (relay_name, id)
);

COMMENT ON TABLE cdc.failed_event IS
    'pgrelay: events parked after a handler refused them permanently';
