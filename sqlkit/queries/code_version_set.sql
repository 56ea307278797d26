-- Records which version of the functions is installed.
INSERT INTO cdc.code_version (digest) VALUES ($1)
ON CONFLICT (only_row) DO UPDATE SET digest = excluded.digest, installed = now();
