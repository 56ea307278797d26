-- A custom event on channel $1 with the JSON payload $2 (functions/40_publish.sql).
SELECT cdc.publish($1::text, $2::text::jsonb);
