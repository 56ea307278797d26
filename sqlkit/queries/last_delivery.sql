-- When relay $1 last recorded a delivery (NULL: never).
SELECT max(updated_at) FROM cdc.relay_cursor WHERE name = $1;
