-- Capture options (functions/25_options.sql): cdc.ensure_cdc_for takes
-- named, defaulted options, and cdc.cdc_tables() returns them. A function's
-- arguments and result type cannot be changed in place, so the old ones
-- are dropped here and functions/ installs the new ones; whoever could
-- execute cdc.cdc_tables() (`relay status`) keeps that right.
DROP FUNCTION cdc.ensure_cdc_for(regclass);

DO $do$
DECLARE
    grantees text[];
BEGIN
    SELECT array_agg(DISTINCT a.grantee::regrole::text)
    INTO grantees
    FROM pg_proc p, aclexplode(p.proacl) a
    WHERE p.oid = 'cdc.cdc_tables()'::regprocedure
      AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner;
    DROP FUNCTION cdc.cdc_tables();
    CREATE FUNCTION cdc.cdc_tables()
    RETURNS TABLE (tbl regclass, actions text[], ignore_columns text[], exclude_columns text[], row_filter text)
    LANGUAGE sql STABLE
    AS 'SELECT NULL::regclass, NULL::text[], NULL::text[], NULL::text[], NULL::text WHERE false';
    IF grantees IS NOT NULL THEN
        EXECUTE format('GRANT EXECUTE ON FUNCTION cdc.cdc_tables() TO %s',
                       array_to_string(grantees, ', '));
    END IF;
END
$do$;
