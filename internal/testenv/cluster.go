package testenv

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/route"
)

// maxTableTries bounds TablesOnShards' search. Each name lands on a given one
// of m masters with odds about 1/m, so a few dozen names are plenty; the
// bound only turns a cluster that never offers a master into a failure
// instead of a hang.
const maxTableTries = 1000

// TablesOnShards returns n distinct table names ("t_" and random hex,
// lowercase so that they need no quoting) whose channels,
// route.Channel("public", name), hash to slots that n different masters
// serve: a test of the relay against a cluster then really spreads its
// tables over shards instead of trusting random names to do so. It fails the
// test when the cluster has fewer than n masters serving slots.
func TablesOnShards(t testing.TB, c *redis.ClusterClient, n int) []string {
	t.Helper()
	ctx := Context(t)
	slots := clusterSlots(t, ctx, c)
	masters := map[string]bool{}
	for _, s := range slots {
		if len(s.Nodes) > 0 {
			masters[s.Nodes[0].Addr] = true
		}
	}
	if len(masters) < n {
		t.Fatalf("the test needs %d Redis Cluster masters, the cluster has %d", n, len(masters))
	}

	used := map[string]bool{}
	names := make([]string, 0, n)
	for tries := 0; len(names) < n; tries++ {
		if tries == maxTableTries {
			t.Fatalf("found tables on %d of %d masters after %d names", len(names), n, tries)
		}
		name := UniqueName("t_")
		master := keyMaster(t, ctx, c, slots, route.Channel(route.DefaultSchema, name))
		if !used[master] {
			used[master] = true
			names = append(names, name)
		}
	}
	return names
}

// MasterOf returns a plain client of the master that serves key, closed when
// the test ends. It is a connection of its own, outside c's pools, so that a
// test can act on that one shard (CLIENT KILL TYPE normal, say, which skips
// the connection sending it) without the cluster client routing the command
// elsewhere or losing the connection it is using.
func MasterOf(t testing.TB, c *redis.ClusterClient, key string) *redis.Client {
	t.Helper()
	ctx := Context(t)
	addr := keyMaster(t, ctx, c, clusterSlots(t, ctx, c), key)
	// Whatever c needs to reach a node, this client needs too.
	o := c.Options()
	m := redis.NewClient(&redis.Options{
		Addr:                addr,
		Dialer:              o.Dialer,
		Protocol:            o.Protocol,
		Username:            o.Username,
		Password:            o.Password,
		CredentialsProvider: o.CredentialsProvider,
		TLSConfig:           o.TLSConfig,
	})
	t.Cleanup(func() { _ = m.Close() })
	require.NoError(t, m.Ping(ctx).Err(), "connect to Redis Cluster master %s", addr)
	return m
}

// clusterSlots returns which master (the first node of each range) serves
// which slots, as the cluster itself says: the server's view, not the
// client's cached one.
func clusterSlots(t testing.TB, ctx context.Context, c *redis.ClusterClient) []redis.ClusterSlot {
	t.Helper()
	slots, err := c.ClusterSlots(ctx).Result()
	require.NoError(t, err, "CLUSTER SLOTS")
	return slots
}

// keyMaster returns the address of the master that serves key according to
// slots. The slot comes from CLUSTER KEYSLOT, Redis' own hashing (hash tags
// included), rather than a copy of it here.
func keyMaster(t testing.TB, ctx context.Context, c *redis.ClusterClient, slots []redis.ClusterSlot, key string) string {
	t.Helper()
	slot, err := c.ClusterKeySlot(ctx, key).Result()
	require.NoError(t, err, "CLUSTER KEYSLOT %s", key)
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
			return s.Nodes[0].Addr
		}
	}
	t.Fatalf("no Redis Cluster master serves slot %d (of %s)", slot, key)
	return ""
}
