package main

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
)

// TestCLIStatusMaxLag: status --max-lag exits with status 2 when the
// oldest undelivered event is older than the limit, and 0 otherwise.
func TestCLIStatusMaxLag(t *testing.T) {
	ctx := testenv.Context(t)
	dbURL := testenv.NewDatabase(t)
	pool := testenv.Pool(t, dbURL)
	_, err := pool.Exec(ctx, `CREATE TABLE lagging (id int PRIMARY KEY)`)
	require.NoError(t, err)
	_, _, err = runCLI(ctx, "--database-url", dbURL, "ensure-cdc", "lagging")
	require.NoError(t, err)

	_, _, err = runCLI(ctx, "--database-url", dbURL, "status", "--max-lag", "1ms")
	require.NoError(t, err, "nothing undelivered: no lag")

	// An event written an hour ago, as far as its change time says.
	_, err = pool.Exec(ctx, `INSERT INTO lagging VALUES (1); UPDATE cdc.outbox SET changed_at = now() - interval '1 hour'`)
	require.NoError(t, err)
	out, line, err := runCLI(ctx, "--database-url", dbURL, "status", "--max-lag", "1m")
	var coded interface{ ExitCode() int }
	require.True(t, errors.As(err, &coded), "%v", err)
	require.Equal(t, 2, coded.ExitCode())
	require.Contains(t, line, "more than --max-lag 1m0s")
	require.Contains(t, out, "public.lagging: 1 undelivered, oldest ", "the status is printed first")

	_, _, err = runCLI(ctx, "--database-url", dbURL, "status", "--max-lag", "2h")
	require.NoError(t, err)
	_, line, err = runCLI(ctx, "--database-url", dbURL, "status", "--max-lag", "-1s")
	require.Error(t, err)
	require.Contains(t, line, "invalid --max-lag")
}
