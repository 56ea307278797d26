-- The digest of the installed functions (functions.go).
SELECT digest FROM cdc.code_version;
