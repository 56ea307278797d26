-- Lets cdc.capture() cache each table's primary-key columns for the session
-- (see there): every ALTER TABLE bumps cdc.ddl_generation, which invalidates
-- the cache. Event triggers need superuser; without one, this migration
-- installs nothing and the capture looks the key up every time.
DO $do$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE NOTICE 'not superuser: primary-key columns will not be cached (a little slower capture)';
        RETURN;
    END IF;
    CREATE SEQUENCE cdc.ddl_generation;
    PERFORM nextval('cdc.ddl_generation');

    CREATE FUNCTION cdc.ddl_changed() RETURNS event_trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
    BEGIN
        PERFORM nextval('cdc.ddl_generation');
    END
    $fn$;

    CREATE EVENT TRIGGER cdc_ddl_changed ON ddl_command_end
        WHEN TAG IN ('ALTER TABLE', 'CREATE INDEX', 'DROP INDEX', 'ALTER INDEX', 'DROP TABLE')
        EXECUTE FUNCTION cdc.ddl_changed();
END
$do$;
