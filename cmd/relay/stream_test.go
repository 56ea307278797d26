package main

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	redissink "github.com/pgrelay/pgrelay/handlers/redis"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

// TestCLIRunBothModes: `relay run --redis-mode both` publishes each event
// and appends it to the table's stream, the same JSON in the same order, on
// one Redis and (sharded pub/sub) on a Redis Cluster.
func TestCLIRunBothModes(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		rdb := testenv.Redis(t)
		testCLIRunBoth(t, rdb, rdb.Subscribe, "--redis-url", testenv.RedisURL())
	})
	t.Run("cluster", func(t *testing.T) {
		rc := testenv.RedisCluster(t)
		testCLIRunBoth(t, rc, rc.SSubscribe, "--redis-cluster", "--redis-url", testenv.RedisClusterURL())
	})
}

func testCLIRunBoth(t *testing.T, rdb redis.UniversalClient,
	subscribe func(context.Context, ...string) *redis.PubSub, redisFlags ...string) {
	ctx := testenv.Context(t)
	dbURL := testenv.NewDatabase(t)
	pool := testenv.Pool(t, dbURL)
	table := testenv.UniqueName("orders_")
	stream := "public." + table + ".cdc_events"
	t.Cleanup(func() {
		rdb.Del(context.Background(), stream)
		rdb.Del(context.Background(), redissink.BookKey(stream, relay.DefaultName))
	})
	_, err := pool.Exec(ctx, `CREATE TABLE `+table+` (id int PRIMARY KEY, total numeric)`)
	require.NoError(t, err)
	_, _, err = runCLI(ctx, "--database-url", dbURL, "ensure-cdc", table)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO `+table+` VALUES (1, 9.99), (2, 0.01)`)
	require.NoError(t, err)

	sub := subscribe(ctx, stream)
	defer sub.Close()
	_, err = sub.Receive(ctx)
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		args := append([]string{"--database-url", dbURL}, redisFlags...)
		_, _, err := runCLI(runCtx, append(args, "run", "--redis-mode", "both", "--stream-maxlen", "0")...)
		done <- err
	}()
	var published []string
	for range 2 {
		msg, err := sub.ReceiveMessage(ctx)
		require.NoError(t, err)
		published = append(published, msg.Payload)
	}
	stop()
	require.NoError(t, <-done)

	entries, err := rdb.XRange(ctx, stream, "-", "+").Result()
	require.NoError(t, err)
	var appended []string
	for _, e := range entries {
		appended = append(appended, e.Values["event"].(string))
	}
	require.Equal(t, published, appended)
	require.True(t, strings.HasPrefix(appended[0], `{"event_id":`), appended[0])
}
