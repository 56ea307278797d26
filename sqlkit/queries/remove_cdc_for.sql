SELECT cdc.remove_cdc_for($1::oid::regclass);
