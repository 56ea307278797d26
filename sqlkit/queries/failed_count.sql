SELECT count(*) FROM cdc.failed_event WHERE relay_name = $1;
