SELECT cdc.ensure_cdc_for($1::oid::regclass);
