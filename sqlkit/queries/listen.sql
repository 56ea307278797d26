LISTEN cdc_events;
