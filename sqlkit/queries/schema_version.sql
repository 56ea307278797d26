SELECT version FROM cdc.schema_version;
