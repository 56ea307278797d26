-- Custom events: cdc.publish(channel, payload) writes an outbox row of
-- action 'message' in the caller's transaction (functions/40_publish.sql).
-- Such a row keeps the channel in table_name, with an empty schema_name, so
-- that it travels through the outbox, the relay's reads and
-- cdc.failed_event like a row event.
ALTER TABLE cdc.outbox
    DROP CONSTRAINT outbox_action_check,
    ADD CONSTRAINT outbox_action_check
        CHECK (action IN ('insert', 'update', 'delete', 'truncate', 'message'));

COMMENT ON COLUMN cdc.outbox.table_name IS
    'pgrelay: the changed table, or for action message the channel given to cdc.publish (schema_name is then empty)';
