-- Row-filter gates (functions/18_gate.sql): cdc.capture_trigger_ops
-- replaces cdc.capture_trigger_sql, and two event triggers guard the
-- gates. Event triggers need superuser; without them no table is gated,
-- and a row filter is checked by the capture function alone, as before.
-- The guards' functions are code: placeholders here, which every Migrate
-- then replaces from functions/19_gate_guards.sql.
DROP FUNCTION IF EXISTS cdc.capture_trigger_sql(regclass, text, text, text[]);

DO $do$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE NOTICE 'not superuser: row filters will not be gated (a statement whose rows a filter rejects costs a little more)';
        RETURN;
    END IF;
    CREATE FUNCTION cdc.gate_guard_drop() RETURNS event_trigger
    LANGUAGE plpgsql AS 'BEGIN END';
    CREATE FUNCTION cdc.gate_guard_ddl() RETURNS event_trigger
    LANGUAGE plpgsql AS 'BEGIN END';

    CREATE EVENT TRIGGER cdc_gate_guard_drop ON sql_drop
        EXECUTE FUNCTION cdc.gate_guard_drop();
    CREATE EVENT TRIGGER cdc_gate_guard_ddl ON ddl_command_end
        WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE')
        EXECUTE FUNCTION cdc.gate_guard_ddl();
END
$do$;
