package sse_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/handlers/sse"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// TestRelayToSSE runs a relay into the sink: positions follow delivery
// (commit) order, and a second relay run on the same database (a restart)
// continues them, with replay from before the restart.
func TestRelayToSSE(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	dbURL := testenv.NewMigratedDatabase(t)
	pool := testenv.Pool(t, dbURL)
	_, err := pool.Exec(ctx, `CREATE TABLE users (id bigint PRIMARY KEY, name text)`)
	require.NoError(t, err)
	_, err = sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "users"})
	require.NoError(t, err)

	run := func(h *sse.Handler) (stop func()) {
		r, err := relay.New(relay.Config{
			DatabaseURL: dbURL, Name: "sse", RetryInterval: 50 * time.Millisecond,
			WatchdogInterval: 200 * time.Millisecond, Timeout: 2 * time.Second, PollInterval: 100 * time.Millisecond,
		}, h)
		require.NoError(t, err)
		require.NoError(t, r.Start(ctx))
		return func() { require.NoError(t, r.Close(context.Background())) }
	}

	h1, srv1 := newHandler(t, pool, sse.Config{})
	stop := run(h1)
	s := connect(t, srv1, "table=public.users", nil)
	_, err = pool.Exec(ctx, `INSERT INTO users VALUES (1, 'a'), (2, 'b')`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE users SET name = 'c' WHERE id = 1`)
	require.NoError(t, err)
	got := s.take(t, 3)
	assert.Equal(t, seq(1, 3), positions(got))
	assert.Equal(t, "update", got[2].event)
	var e struct {
		Changes []struct{ Field, Old, New string }
	}
	require.NoError(t, json.Unmarshal([]byte(got[2].data), &e))
	require.Len(t, e.Changes, 1)
	assert.Equal(t, "c", e.Changes[0].New)
	stop()

	_, err = pool.Exec(ctx, `DELETE FROM users WHERE id = 2`)
	require.NoError(t, err)
	h2, srv2 := newHandler(t, pool, sse.Config{})
	defer run(h2)()
	r := connect(t, srv2, "", http.Header{"Last-Event-ID": {"1"}})
	got = r.take(t, 3)
	assert.Equal(t, seq(2, 4), positions(got))
	assert.Equal(t, "delete", got[2].event)
}
