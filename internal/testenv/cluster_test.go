package testenv_test

import (
	"context"
	"fmt"
	"regexp"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/route"
)

// countMasters counts the cluster's masters as go-redis sees them, apart
// from the CLUSTER SLOTS reading that the helpers under test use.
func countMasters(t *testing.T, c *redis.ClusterClient) int {
	t.Helper()
	var n atomic.Int64
	require.NoError(t, c.ForEachMaster(testenv.Context(t), func(context.Context, *redis.Client) error {
		n.Add(1)
		return nil
	}))
	return int(n.Load())
}

// clientMaster is the address of the master that go-redis itself, hashing
// on the client side, sends key to: a check independent of CLUSTER KEYSLOT.
func clientMaster(t *testing.T, c *redis.ClusterClient, key string) string {
	t.Helper()
	m, err := c.MasterForKey(testenv.Context(t), key)
	require.NoError(t, err)
	return m.Options().Addr
}

func TestTablesOnShards(t *testing.T) {
	c := testenv.RedisCluster(t)
	masters := countMasters(t, c)
	require.GreaterOrEqual(t, masters, 2, "a cluster test needs at least two masters")

	names := testenv.TablesOnShards(t, c, masters)
	require.Len(t, names, masters)
	seen := map[string]string{}
	for _, name := range names {
		assert.Regexp(t, regexp.MustCompile(`^t_[0-9a-f]+$`), name)
		addr := clientMaster(t, c, route.Channel("public", name))
		if other, dup := seen[addr]; dup {
			t.Errorf("tables %s and %s are both on master %s", other, name, addr)
		}
		seen[addr] = name
	}

	t.Run("MoreThanMasters", func(t *testing.T) {
		r := failsOn(t, func(tb testing.TB) { testenv.TablesOnShards(tb, c, masters+1) })
		assert.Contains(t, r, fmt.Sprintf("needs %d Redis Cluster masters, the cluster has %d", masters+1, masters))
	})
}

func TestMasterOf(t *testing.T) {
	c := testenv.RedisCluster(t)
	ctx := testenv.Context(t)
	// One key on each master, so that every master is asked for.
	for _, name := range testenv.TablesOnShards(t, c, countMasters(t, c)) {
		key := route.Channel("public", name)
		require.NoError(t, c.Set(ctx, key, name, time.Minute).Err())
		t.Cleanup(func() { c.Del(context.Background(), key) })

		m := testenv.MasterOf(t, c, key)
		assert.Equal(t, clientMaster(t, c, key), m.Options().Addr, "master of %s", key)
		// A plain client on any other node would get a MOVED error.
		got, err := m.Get(ctx, key).Result()
		require.NoError(t, err, "GET %s on its master", key)
		assert.Equal(t, name, got)
	}
}

// failsOn runs f with a testing.TB whose failures end only f, and returns
// the failure message, failing t when f does not fail.
func failsOn(t *testing.T, f func(testing.TB)) string {
	t.Helper()
	r := &failRecorder{TB: t}
	done := make(chan struct{})
	// Fatalf and FailNow end the goroutine they are called in: this one.
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	if !r.failed {
		t.Fatal("expected a test failure, got none")
	}
	return r.msg
}

// failRecorder records a failure instead of failing the test it wraps.
type failRecorder struct {
	testing.TB
	failed bool
	msg    string
}

func (r *failRecorder) Errorf(format string, args ...any) {
	r.failed = true
	r.msg += fmt.Sprintf(format, args...)
}

func (r *failRecorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	r.FailNow()
}

func (r *failRecorder) FailNow() {
	r.failed = true
	runtime.Goexit()
}
