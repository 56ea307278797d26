-- The settings a capture must not take from the writer's session: the
-- search_path its SQL resolves names with (it runs SECURITY DEFINER, so a
-- hostile one could substitute functions or operators), and those the JSON
-- of a row depends on (timestamptz offsets, interval, bytea and float text).
--
-- cdc.capture() does not pin them with SET clauses on the function: those
-- cost every call a save and restore of the settings, about a sixth of what
-- capture adds to a one-row statement (internal/bench/tried.md), paid even
-- where the session already has the right values, as almost every one has.
-- Instead its common path is written with every name schema-qualified and
-- runs only while cdc.capture_settings_ok() holds; otherwise it pins what
-- it needs (the search_path, and where the session's differ the JSON
-- settings, with cdc.capture_pin()) for the rest of its work and restores
-- it (cdc.capture_unpin()). A statement that fails aborts its transaction
-- or savepoint, which undoes the pinning with it. Where the common path
-- cannot run at all (no key cache), cdc.capture() does get SET clauses:
-- see the end of functions/10_capture.sql.
--
-- These functions run with the writer's search_path: every name in them is
-- schema-qualified.

-- cdc.capture_search_path is the search_path the capture's SQL runs with.
CREATE OR REPLACE FUNCTION cdc.capture_search_path() RETURNS pg_catalog.text
LANGUAGE sql IMMUTABLE
AS $fn$
    SELECT 'pg_catalog, pg_temp'::pg_catalog.text
$fn$;

-- cdc.capture_pin sets the capture's settings for the transaction and
-- returns what they were, as {name, value} pairs for cdc.capture_unpin.
-- The one list of them. search_path comes last, and each function sets
-- them in one statement: PostgreSQL plans a statement again when the
-- search_path it was planned under changed, and a statement run on either
-- side of the change (a loop over the settings) was planned again on every
-- call, which made pinning cost 180 µs instead of 10.
CREATE OR REPLACE FUNCTION cdc.capture_pin() RETURNS pg_catalog.text[]
LANGUAGE plpgsql
AS $fn$
DECLARE
    names constant pg_catalog.text[] := '{TimeZone,IntervalStyle,bytea_output,extra_float_digits,search_path}';
    vals  constant pg_catalog.text[] := ARRAY['UTC', 'postgres', 'hex', '3', cdc.capture_search_path()];
    old   pg_catalog.text[];
BEGIN
    old := ARRAY(SELECT ARRAY[u.n, pg_catalog.current_setting(u.n)] FROM pg_catalog.unnest(names) AS u(n));
    PERFORM pg_catalog.set_config(u.n, u.v, true) FROM ROWS FROM (pg_catalog.unnest(names), pg_catalog.unnest(vals)) AS u(n, v);
    RETURN old;
END
$fn$;

-- cdc.capture_unpin gives the settings cdc.capture_pin set back the values
-- it returned, in its order.
CREATE OR REPLACE FUNCTION cdc.capture_unpin(old pg_catalog.text[]) RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pg_catalog.set_config(old[g.i][1], old[g.i][2], true) FROM pg_catalog.generate_subscripts(old, 1) AS g(i);
END
$fn$;

-- cdc.capture_settings_ok tells whether the session's settings give the
-- JSON cdc.capture_pin's values would: a time zone that is UTC by another
-- name, and any extra_float_digits above 0 (all print floats exactly).
-- search_path is not asked: the code that runs while this holds names
-- everything with its schema. A plain SQL expression, so that the planner
-- inlines it into the caller's.
CREATE OR REPLACE FUNCTION cdc.capture_settings_ok() RETURNS boolean
LANGUAGE sql STABLE
AS $fn$
    SELECT pg_catalog.current_setting('TimeZone') OPERATOR(pg_catalog.=) ANY ('{UTC,Etc/UTC}'::pg_catalog.text[])
       AND pg_catalog.current_setting('IntervalStyle') OPERATOR(pg_catalog.=) 'postgres'
       AND pg_catalog.current_setting('bytea_output') OPERATOR(pg_catalog.=) 'hex'
       AND pg_catalog.current_setting('extra_float_digits')::pg_catalog.int4 OPERATOR(pg_catalog.>) 0
$fn$;
