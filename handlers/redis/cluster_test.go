package redis_test

import (
	"context"
	"encoding/json"
	"testing"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	redissink "github.com/pgrelay/pgrelay/handlers/redis"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/route"
)

// TestClusterBothModeAcrossShards appends and publishes (sharded) the events
// of two tables whose channels live on different masters, kills one master's
// client connections between batches, and replays a batch: each stream has
// its table's events once, in order, and each sharded subscriber got them
// in the same order.
func TestClusterBothModeAcrossShards(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rc := testenv.RedisCluster(t)
	tables := testenv.TablesOnShards(t, rc, 2)
	h := newHandler(t, redissink.Config{Client: rc, Mode: redissink.ModeBoth})
	require.Equal(t, redissink.PubSubSharded, h.Config().PubSub, "a cluster client publishes sharded")

	var streams []string
	for _, table := range tables {
		stream := route.Channel("public", table)
		streams = append(streams, stream)
		t.Cleanup(func() {
			rc.Del(context.Background(), stream)
			rc.Del(context.Background(), redissink.BookKey(stream, "n"))
		})
	}
	subs := shardedSubscriptions(t, ctx, rc, streams)

	// Events of both tables, interleaved, ids increasing.
	batch := func(from, to int64) []relay.Event {
		var out []relay.Event
		for id := from; id <= to; id++ {
			out = append(out, relay.Event{ID: id, Txid: 1, Schema: "public", Table: tables[id%2],
				Action: relay.ActionInsert, Key: json.RawMessage("1"), Data: json.RawMessage(`{}`)})
		}
		return out
	}
	d := relay.Delivery{Name: "n", Token: 1}
	dctx := relay.WithDelivery(ctx, d)
	require.NoError(t, h.OnConnect(ctx))
	require.NoError(t, h.OnEvents(dctx, batch(1, 40)))
	h.Checkpoint(d)
	require.NoError(t, h.OnEvents(dctx, batch(41, 80)))

	// One master drops its clients (the handler's among them) mid-stream;
	// the relay would hand the unsaved batch out again, with newer events.
	killer := testenv.MasterOf(t, rc, streams[0])
	require.NoError(t, killer.Do(ctx, "CLIENT", "KILL", "TYPE", "normal").Err())
	for attempt := 0; ; attempt++ {
		err := h.OnEvents(dctx, batch(41, 120))
		if err == nil {
			break
		}
		require.Less(t, attempt, 5, "the handler does not recover: %v", err)
	}

	for i, stream := range streams {
		received := receiveIDs(t, ctx, subs[i], 60)
		var want []int64
		for id := int64(1); id <= 120; id++ {
			if int(id%2) == i {
				want = append(want, id)
			}
		}
		require.Equal(t, want, testenv.StreamEventIDs(t, ctx, rc, stream), "stream %s", stream)
		require.Equal(t, want, received, "sharded channel %s", stream)
	}
}

// TestClusterShardedPubSub: pub/sub mode on a cluster SPUBLISHes each
// table's events on its own shard.
func TestClusterShardedPubSub(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rc := testenv.RedisCluster(t)
	tables := testenv.TablesOnShards(t, rc, 2)
	h := newHandler(t, redissink.Config{Client: rc})
	channels := []string{route.Channel("public", tables[0]), route.Channel("public", tables[1])}
	subs := shardedSubscriptions(t, ctx, rc, channels)
	var events []relay.Event
	for id := int64(1); id <= 10; id++ {
		events = append(events, relay.Event{ID: id, Schema: "public", Table: tables[id%2],
			Action: relay.ActionDelete, Key: json.RawMessage("1")})
	}
	require.NoError(t, h.OnEvents(ctx, events))
	require.Equal(t, []int64{2, 4, 6, 8, 10}, receiveIDs(t, ctx, subs[0], 5))
	require.Equal(t, []int64{1, 3, 5, 7, 9}, receiveIDs(t, ctx, subs[1], 5))
}

// shardedSubscriptions SSUBSCRIBEs to each channel on a connection of its
// own (one SSUBSCRIBE takes channels of one slot only), confirmed, closed
// with the test.
func shardedSubscriptions(t *testing.T, ctx context.Context, rc *goredis.ClusterClient, channels []string) []*goredis.PubSub {
	t.Helper()
	subs := make([]*goredis.PubSub, len(channels))
	for i, ch := range channels {
		subs[i] = rc.SSubscribe(ctx, ch)
		t.Cleanup(func() { _ = subs[i].Close() })
		_, err := subs[i].Receive(ctx)
		require.NoError(t, err)
	}
	return subs
}

// receiveIDs returns the event ids of the next n messages of sub.
func receiveIDs(t *testing.T, ctx context.Context, sub *goredis.PubSub, n int) []int64 {
	t.Helper()
	var ids []int64
	for len(ids) < n {
		msg, err := sub.ReceiveMessage(ctx)
		require.NoError(t, err)
		var ev struct {
			EventID int64 `json:"event_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(msg.Payload), &ev))
		ids = append(ids, ev.EventID)
	}
	return ids
}

func TestBookKeySharesTheStreamSlot(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rc := testenv.RedisCluster(t)
	for _, stream := range []string{"public.users.cdc_events", "a{tag}b.cdc_events", "{x}.cdc_events"} {
		want, err := rc.ClusterKeySlot(ctx, stream).Result()
		require.NoError(t, err)
		got, err := rc.ClusterKeySlot(ctx, redissink.BookKey(stream, "default")).Result()
		require.NoError(t, err)
		require.Equal(t, want, got, stream)
	}
}
