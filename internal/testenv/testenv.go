// Package testenv gives tests isolated, real PostgreSQL databases and Redis
// connections. It reads TEST_DATABASE_URL and TEST_REDIS_URL, defaulting to
// the local servers test.sh expects, and TEST_REDIS_CLUSTER_URL, which only
// test.sh sets.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// Defaults used when the environment names no servers.
const (
	DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	DefaultRedisURL    = "redis://127.0.0.1:6379/0"
)

// DatabasePrefix starts the name of every database the tests create, so
// test.sh can remove any left behind by a killed run.
const DatabasePrefix = "pgrelay_test_"

// AdminURL returns the URL of the server the tests create databases on.
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultDatabaseURL
}

// RedisURL returns the URL of the Redis server the tests use.
func RedisURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return DefaultRedisURL
}

// RedisClusterURL returns the URL of the throw-away Redis Cluster that
// test.sh starts (TEST_REDIS_CLUSTER_URL, in go-redis's cluster form:
// redis://h1:p1?addr=h2:p2&addr=h3:p3), or "" when none was started.
func RedisClusterURL() string {
	return os.Getenv("TEST_REDIS_CLUSTER_URL")
}

// RedisCluster returns a client of the test Redis Cluster, closed when the
// test ends. Without TEST_REDIS_CLUSTER_URL the test is skipped: only
// test.sh starts a cluster, and no shared one runs on this machine.
func RedisCluster(t testing.TB) *redis.ClusterClient {
	t.Helper()
	u := RedisClusterURL()
	if u == "" {
		t.Skip("no Redis Cluster: TEST_REDIS_CLUSTER_URL is not set (./test.sh starts one)")
	}
	opts, err := redis.ParseClusterURL(u)
	require.NoError(t, err, "TEST_REDIS_CLUSTER_URL")
	c := redis.NewClusterClient(opts)
	require.NoError(t, c.Ping(context.Background()).Err(), "connect to the test Redis Cluster")
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Context returns a context that ends with the test, or after a generous
// minute so that a hung test fails instead of blocking the suite.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// UniqueName returns prefix followed by random hex, for databases, tables and
// channels that must not collide between parallel tests.
func UniqueName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// NewRole creates a login role for the test, with password "pw", and
// returns its name and dbURL with it as the user. When the test ends, what
// it owns or was granted in dbURL's database is dropped, then the role: a
// role that owns a database must be made before it, so that it is dropped
// after the database.
func NewRole(t testing.TB, dbURL, prefix string) (name, roleURL string) {
	t.Helper()
	ctx := context.Background()
	name = UniqueName(prefix)
	admin := Pool(t, AdminURL())
	_, err := admin.Exec(ctx, `CREATE ROLE `+pgx.Identifier{name}.Sanitize()+` LOGIN PASSWORD 'pw'`)
	require.NoError(t, err)
	t.Cleanup(func() {
		if conn, err := pgx.Connect(ctx, dbURL); err == nil {
			_, _ = conn.Exec(ctx, `DROP OWNED BY `+pgx.Identifier{name}.Sanitize())
			_ = conn.Close(ctx)
		}
		_, _ = admin.Exec(ctx, `DROP ROLE IF EXISTS `+pgx.Identifier{name}.Sanitize())
	})
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	u.User = url.UserPassword(name, "pw")
	return name, u.String()
}

// NewOwnedDatabase creates an empty database for the test owned by a new
// login role without superuser, as on managed PostgreSQL services, and
// returns the role's name and the database's URL with it as the user.
func NewOwnedDatabase(t testing.TB, prefix string) (role, ownerURL string) {
	t.Helper()
	// Made before the database, so that it is dropped after it.
	role, roleURL := NewRole(t, AdminURL(), prefix)
	dbURL := NewDatabase(t)
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	name := u.Path[1:]
	_, err = Pool(t, AdminURL()).Exec(context.Background(),
		`ALTER DATABASE `+pgx.Identifier{name}.Sanitize()+` OWNER TO `+pgx.Identifier{role}.Sanitize())
	require.NoError(t, err)
	return role, WithDatabase(roleURL, name)
}

// NewDatabase creates an empty database for the test, drops it when the test
// ends, and returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, AdminURL())
	require.NoError(t, err, "connect to the test PostgreSQL server (set TEST_DATABASE_URL)")
	defer admin.Close(ctx)
	name := UniqueName(DatabasePrefix)
	_, err = admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	require.NoError(t, err)
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), AdminURL())
		if err != nil {
			t.Logf("drop test database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	return WithDatabase(AdminURL(), name)
}

// NewMigratedDatabase is NewDatabase with pgrelay's migrations applied.
func NewMigratedDatabase(t testing.TB) string {
	t.Helper()
	dbURL := NewDatabase(t)
	pool := Pool(t, dbURL)
	require.NoError(t, sqlkit.Migrate(context.Background(), pool))
	return dbURL
}

// WithDatabase returns the URL rawURL with its database name replaced.
func WithDatabase(rawURL, name string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		panic("testenv: TEST_DATABASE_URL must be a postgres:// URL: " + err.Error())
	}
	u.Path = "/" + name
	return u.String()
}

// Pool opens a pool on url, closed when the test ends.
func Pool(t testing.TB, dbURL string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// Redis returns a client of the test Redis server, closed when the test ends.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(RedisURL())
	require.NoError(t, err)
	c := redis.NewClient(opts)
	require.NoError(t, c.Ping(context.Background()).Err(), "connect to the test Redis server (set TEST_REDIS_URL)")
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// WaitForLockWait blocks until the backend with process id pid waits for a
// lock, as pg_stat_activity reports it: the signal that a statement started
// in another goroutine is queued behind another transaction. It fails the
// test when ended is closed first (the statement finished without waiting)
// or when ctx ends.
func WaitForLockWait(t testing.TB, ctx context.Context, db interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, pid uint32, ended <-chan struct{}) {
	t.Helper()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		var waiting bool
		require.NoError(t, db.QueryRow(ctx,
			`SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&waiting))
		if waiting {
			return
		}
		select {
		case <-ended:
			t.Fatalf("backend %d finished its statement without waiting for a lock", pid)
		case <-ctx.Done():
			t.Fatalf("backend %d did not start waiting for a lock", pid)
		case <-tick.C:
		}
	}
}

// WaitFor checks cond every few milliseconds until it holds, and fails the
// test when ctx (testenv.Context's, say) ends first. For outcomes that have
// no signal to wait on: state kept by another process or server.
func WaitFor(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// OutboxRowReads returns how many rows of cdc.outbox sequential and index
// scans have read in conn's database, conn's own reads included up to now:
// what a test compares before and after to tell a plan that reads what it
// needs from one that reads every row, whatever the timing. It skips the
// test before PostgreSQL 15, which cannot flush a backend's counters at
// once (pg_stat_force_next_flush).
func OutboxRowReads(t testing.TB, ctx context.Context, conn *pgx.Conn) int64 {
	t.Helper()
	var version int
	require.NoError(t, conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version))
	if version < 150000 {
		t.Skip("reading a backend's table counters at once needs PostgreSQL 15 (pg_stat_force_next_flush)")
	}
	_, err := conn.Exec(ctx, `SELECT pg_stat_force_next_flush()`)
	require.NoError(t, err)
	// The flush happens when a statement ends; the snapshot of the
	// counters this session took, if any, is dropped.
	_, err = conn.Exec(ctx, `SELECT pg_stat_clear_snapshot()`)
	require.NoError(t, err)
	var n int64
	require.NoError(t, conn.QueryRow(ctx, `
		SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
		FROM pg_stat_user_tables WHERE schemaname = 'cdc' AND relname = 'outbox'`).Scan(&n))
	return n
}
