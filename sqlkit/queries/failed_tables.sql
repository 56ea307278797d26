-- Relay $1's parked events per table (for a custom event: schema '' and
-- its channel): how many, and the change time of the oldest.
SELECT schema_name, table_name, count(*), min(changed_at)
FROM cdc.failed_event
WHERE relay_name = $1
GROUP BY schema_name, table_name
ORDER BY schema_name, table_name;
