-- From here on the functions, the trigger function and the views live in
-- sqlkit/functions/ and are installed by every Migrate, replacing the
-- copies earlier migrations made (see functions.go). This row records which
-- version of them is installed, so that a pgrelay whose functions differ
-- asks for `relay migrate` instead of running against others.
CREATE TABLE cdc.code_version (
    only_row  boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    digest    text        NOT NULL,
    installed timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE cdc.code_version IS
    'pgrelay: digest of the installed functions (sqlkit/functions)';
