package main

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

// These tests need the throw-away Redis Cluster of test.sh
// (TEST_REDIS_CLUSTER_URL) and are skipped without it.

// clusterURL returns the test cluster's URL with a client name of the
// test's own, for killClients to find the subscriber's connections by.
func clusterURL(name string) string {
	u := testenv.RedisClusterURL()
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + "client_name=" + name
}

// shardTables returns n tables whose channels and streams live on n
// different masters, their streams deleted when the test ends.
func shardTables(t *testing.T, cc *redis.ClusterClient, n int) (tables, streams []string) {
	tables = testenv.TablesOnShards(t, cc, n)
	for _, table := range tables {
		streams = append(streams, "public."+table+".cdc_events")
	}
	t.Cleanup(func() {
		for _, s := range streams {
			cc.Del(context.Background(), s)
		}
	})
	return tables, streams
}

// killClients closes, on master, the connections of the clients named
// name, as a failing network would, and returns how many there were.
func killClients(t *testing.T, ctx context.Context, master *redis.Client, name string) int {
	t.Helper()
	list, err := master.ClientList(ctx).Result()
	require.NoError(t, err)
	killed := 0
	for line := range strings.SplitSeq(strings.TrimSpace(list), "\n") {
		fields := map[string]string{}
		for kv := range strings.FieldsSeq(line) {
			k, v, _ := strings.Cut(kv, "=")
			fields[k] = v
		}
		if fields["name"] == name {
			require.NoError(t, master.Do(ctx, "CLIENT", "KILL", "ID", fields["id"]).Err())
			killed++
		}
	}
	return killed
}

// perTable returns the lines of each table, in the order printed.
func perTable(t *testing.T, lines, tables []string) map[string][]string {
	t.Helper()
	got := map[string][]string{}
	for _, l := range lines {
		found := false
		for _, table := range tables {
			if strings.Contains(l, `"table":"`+table+`"`) {
				got[table] = append(got[table], l)
				found = true
			}
		}
		require.True(t, found, "a line of none of the tables: %s", l)
	}
	return got
}

func TestClusterStreams(t *testing.T) {
	t.Parallel()
	cc := testenv.RedisCluster(t)
	ctx := testenv.Context(t)
	tables, streams := shardTables(t, cc, 3)
	want := map[string][]string{}
	for n := 1; n <= 20; n++ {
		for i, table := range tables {
			e := event(table, relay.ActionInsert, n)
			xadd(t, ctx, cc, streams[i], e)
			want[table] = append(want[table], e)
		}
	}
	r := runApp(ctx, append([]string{"--redis-url", testenv.RedisClusterURL(), "--cluster", "--stream", "--from", "0", "--count", "60"}, tables...)...)
	require.NoError(t, r.wait(t, ctx), r.stderr.String())
	assert.Equal(t, want, perTable(t, r.stdout.lines(), tables))
}

// TestClusterGroupReconnects reads three streams on three masters through a
// group, and closes the subscriber's connections on one of them midway:
// every entry is printed once, in its stream's order, and acknowledged.
func TestClusterGroupReconnects(t *testing.T) {
	t.Parallel()
	cc := testenv.RedisCluster(t)
	ctx := testenv.Context(t)
	tables, streams := shardTables(t, cc, 3)
	name := testenv.UniqueName("sub_")
	r := runApp(ctx, append([]string{"--redis-url", clusterURL(name), "--cluster", "--stream", "--group", "g"}, tables...)...)
	r.stderr.waitFor(t, ctx, "as consumer")

	want := map[string][]string{}
	add := func(from, to int) {
		for n := from; n <= to; n++ {
			for i, table := range tables {
				e := event(table, relay.ActionInsert, n)
				xadd(t, ctx, cc, streams[i], e)
				want[table] = append(want[table], e)
			}
		}
	}
	add(1, 5)
	r.stdout.waitLines(t, ctx, 15)
	require.Positive(t, killClients(t, ctx, testenv.MasterOf(t, cc, streams[0]), name))
	add(6, 10)
	r.stderr.waitFor(t, ctx, "reconnected to redis\n")
	r.stdout.waitLines(t, ctx, 30)
	require.NoError(t, r.stop(t, ctx))

	assert.Equal(t, want, perTable(t, r.stdout.lines(), tables))
	assert.Equal(t, 1, strings.Count(r.stderr.String(), "lost connection"), r.stderr.String())
	for _, s := range streams {
		pending, err := cc.XPending(ctx, s, "g").Result()
		require.NoError(t, err)
		assert.Zero(t, pending.Count, s)
	}
}

// TestClusterShardedPubSub subscribes to channels on three masters with
// SSUBSCRIBE, and again after its connection to one was closed.
func TestClusterShardedPubSub(t *testing.T) {
	t.Parallel()
	cc := testenv.RedisCluster(t)
	ctx := testenv.Context(t)
	tables, channels := shardTables(t, cc, 3)
	name := testenv.UniqueName("sub_")
	r := runApp(ctx, append([]string{"--redis-url", clusterURL(name), "--cluster"}, tables...)...)
	r.stderr.waitFor(t, ctx, "subscribed to "+strings.Join(channels, ", ")+" (sharded pub/sub)\n")

	want := map[string][]string{}
	for i, table := range tables {
		e := event(table, relay.ActionInsert, 1)
		require.NoError(t, cc.SPublish(ctx, channels[i], e).Err())
		want[table] = append(want[table], e)
	}
	r.stdout.waitLines(t, ctx, 3)

	require.Positive(t, killClients(t, ctx, testenv.MasterOf(t, cc, channels[1]), name))
	r.stderr.waitFor(t, ctx, "reconnected to redis; subscribed again")
	e := event(tables[1], relay.ActionUpdate, 1)
	require.NoError(t, cc.SPublish(ctx, channels[1], e).Err())
	want[tables[1]] = append(want[tables[1]], e)
	r.stdout.waitLines(t, ctx, 4)
	require.NoError(t, r.stop(t, ctx))
	assert.Equal(t, want, perTable(t, r.stdout.lines(), tables))
}

// TestClusterClassicPattern receives PUBLISHed messages of a pattern with
// --pubsub classic: classic pub/sub reaches every node of a cluster.
func TestClusterClassicPattern(t *testing.T) {
	t.Parallel()
	cc := testenv.RedisCluster(t)
	ctx := testenv.Context(t)
	prefix := testenv.UniqueName("sub_")
	r := runApp(ctx, "--redis-url", testenv.RedisClusterURL(), "--cluster", "--pubsub", "classic", "--count", "3", prefix+"_*")
	r.stderr.waitFor(t, ctx, "subscribed to public."+prefix+"_*.cdc_events\n")
	var want []string
	for _, suffix := range []string{"a", "b", "c"} {
		e := event(prefix+"_"+suffix, relay.ActionInsert, 1)
		require.NoError(t, cc.Publish(ctx, "public."+prefix+"_"+suffix+".cdc_events", e).Err())
		want = append(want, e)
	}
	require.NoError(t, r.wait(t, ctx))
	// Published on different nodes, they reach the subscriber's node over
	// the cluster bus in any order.
	assert.ElementsMatch(t, want, r.stdout.lines())
}

// TestClusterNeedsAClusterURL checks the error of --cluster against a
// single server: one line, naming the URL.
func TestClusterNeedsAClusterURL(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	r := runApp(ctx, "--redis-url", testenv.RedisURL(), "--cluster", "users")
	assert.ErrorContains(t, r.wait(t, ctx), "connect to redis "+testenv.RedisURL())
}
