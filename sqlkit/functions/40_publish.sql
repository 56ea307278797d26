-- cdc.publish(channel, payload) publishes an application's own event if,
-- and only if, the calling transaction commits: in order with the
-- transaction's row events, to the Redis channel (and stream) named
-- channel, as
--
--   {"event_id":…,"txid":…,"timestamp":…,"action":"message","channel":…,"data":<payload>}
--
-- Installed by every Migrate (see functions.go). Not executable by PUBLIC:
-- grant it to the roles that may publish.
CREATE OR REPLACE FUNCTION cdc.publish(channel text, payload jsonb) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF channel IS NULL OR channel = '' THEN
        RAISE EXCEPTION 'cdc.publish: the channel must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF octet_length(channel) > {{.MaxChannelBytes}} THEN
        RAISE EXCEPTION 'cdc.publish: the channel is % bytes long, the most is {{.MaxChannelBytes}}', octet_length(channel)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF payload IS NULL THEN
        RAISE EXCEPTION 'cdc.publish: the payload must not be NULL (a JSON null is ''null''::jsonb)'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    INSERT INTO cdc.outbox (schema_name, table_name, action, data)
    VALUES ('', channel, 'message', payload);
    -- As cdc.capture(): only while a relay waits, after the outbox row.
    IF pg_sequence_last_value('cdc.relay_wake_enter') > pg_sequence_last_value('cdc.relay_wake_leave') THEN
        PERFORM pg_notify('{{.NotifyChannel}}', pg_current_xact_id()::text);
    END IF;
END
$fn$;

REVOKE ALL ON FUNCTION cdc.publish(text, jsonb) FROM PUBLIC;
