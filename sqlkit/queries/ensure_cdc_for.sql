-- Captures table $1 with the options $2..$5 (NULL: the default), see
-- functions/20_tables.sql.
SELECT cdc.ensure_cdc_for($1::oid::regclass, actions => $2::text[], ignore_columns => $3::text[],
                          exclude_columns => $4::text[], row_filter => $5::text);
