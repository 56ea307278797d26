package relay_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

// newRole creates a login role for the test in f's database and removes it
// afterwards.
func newRole(t *testing.T, f fixture, prefix string) (name, dbURL string) {
	t.Helper()
	return testenv.NewRole(t, f.url, prefix)
}

// newRelayRole creates a role with exactly the GRANTs the README lists for
// the relay, and returns its URL.
func newRelayRole(t *testing.T, f fixture) string {
	t.Helper()
	var dbName string
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT current_database()`).Scan(&dbName))
	relayRole, relayURL := newRole(t, f, "pgrelay_relay_")
	r := pgx.Identifier{relayRole}.Sanitize()
	f.exec(t, `GRANT CONNECT ON DATABASE `+pgx.Identifier{dbName}.Sanitize()+` TO `+r)
	f.exec(t, `GRANT USAGE ON SCHEMA cdc TO `+r)
	f.exec(t, `GRANT SELECT, DELETE ON cdc.outbox TO `+r)
	f.exec(t, `GRANT SELECT ON cdc.schema_version, cdc.code_version TO `+r)
	f.exec(t, `GRANT SELECT, INSERT, UPDATE ON cdc.relay_cursor TO `+r)
	f.exec(t, `GRANT SELECT, INSERT, UPDATE ON cdc.failed_event TO `+r)
	f.exec(t, `GRANT SELECT, INSERT, UPDATE, DELETE ON cdc.relay_instance TO `+r)
	f.exec(t, `GRANT USAGE, UPDATE ON SEQUENCE cdc.relay_wake_enter, cdc.relay_wake_leave TO `+r)
	f.exec(t, `GRANT EXECUTE ON FUNCTION cdc.cdc_tables() TO `+r)
	return relayURL
}

// TestLeastPrivilege runs the whole path without superuser: an application
// role with rights on its table only, and a relay role with exactly the
// GRANTs the README lists.
func TestLeastPrivilege(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	var dbName string
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT current_database()`).Scan(&dbName))

	app, appURL := newRole(t, f, "pgrelay_app_")
	f.exec(t, `GRANT INSERT, UPDATE, DELETE, SELECT ON items TO `+pgx.Identifier{app}.Sanitize())

	relayURL := newRelayRole(t, f)

	c := newCollector()
	rl, err := relay.New(relay.Config{DatabaseURL: relayURL}, c)
	require.NoError(t, err)
	require.NoError(t, rl.Start(ctx))
	defer func() { require.NoError(t, rl.Close(context.Background())) }()

	appConn, err := pgx.Connect(ctx, appURL)
	require.NoError(t, err)
	defer appConn.Close(ctx)
	var superuser bool
	require.NoError(t, appConn.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&superuser))
	require.False(t, superuser)
	_, err = appConn.Exec(ctx, `INSERT INTO items VALUES (1, 'a')`)
	require.NoError(t, err)
	_, err = appConn.Exec(ctx, `UPDATE items SET v = 'b'`)
	require.NoError(t, err)
	_, err = appConn.Exec(ctx, `SELECT count(*) FROM cdc.outbox`)
	require.ErrorContains(t, err, "permission denied", "the application role has no access to the outbox")

	events := f.waitExactly(t, ctx, c, 2)
	require.Equal(t, relay.ActionUpdate, events[1].Action)
}
