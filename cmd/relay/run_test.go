package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

// TestCLIRunDrain: run --drain delivers everything committed before it
// started, then exits 0; with --metrics-addr, so that the metrics' backlog
// reader runs alongside (what it serves is metrics' own tests' concern).
func TestCLIRunDrain(t *testing.T) {
	ctx := testenv.Context(t)
	dbURL := testenv.NewDatabase(t)
	pool := testenv.Pool(t, dbURL)
	_, err := pool.Exec(ctx, `CREATE TABLE drained (id int PRIMARY KEY)`)
	require.NoError(t, err)
	_, _, err = runCLI(ctx, "--database-url", dbURL, "ensure-cdc", "drained")
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO drained SELECT g FROM generate_series(1, 2500) g`)
	require.NoError(t, err)

	_, _, err = runCLI(ctx, "--database-url", dbURL, "--redis-url", testenv.RedisURL(), "run", "--drain",
		"--batch-size", "500", "--metrics-addr", "127.0.0.1:0")
	require.NoError(t, err, "drained and exited")

	st, err := relay.ReadStatus(ctx, pool, "")
	require.NoError(t, err)
	require.Zero(t, st.Pending, "everything delivered")
	require.NotNil(t, st.LastDelivery)
	require.Empty(t, st.Relays, "the relay stopped")

	// Nothing left to drain: done at once, which stops the relay while it
	// is still connecting, and that is success too.
	for range 3 {
		_, line, err := runCLI(ctx, "--database-url", dbURL, "run", "--drain")
		require.NoError(t, err, line)
	}
}

func TestCLIVersion(t *testing.T) {
	out, _, err := runCLI(testenv.Context(t), "version")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(out, "relay "), out)
	out, _, err = runCLI(testenv.Context(t), "--version")
	require.NoError(t, err)
	require.Contains(t, out, "relay version ")
}

func TestCLIBadMetricsAddr(t *testing.T) {
	ctx := testenv.Context(t)
	dbURL := testenv.NewMigratedDatabase(t)
	_, line, err := runCLI(ctx, "--database-url", dbURL, "run", "--metrics-addr", "nonsense:port")
	require.Error(t, err)
	require.Contains(t, line, "invalid --metrics-addr")
}
