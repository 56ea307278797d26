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
	// One subscription per channel: SSUBSCRIBE takes channels of one slot.
	subs := make([]*goredis.PubSub, len(streams))
	for i, stream := range streams {
		subs[i] = rc.SSubscribe(ctx, stream)
		defer subs[i].Close()
		_, err := subs[i].Receive(ctx)
		require.NoError(t, err)
	}

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
		var received []int64
		for len(received) < 60 {
			msg, err := subs[i].ReceiveMessage(ctx)
			require.NoError(t, err)
			var ev struct {
				EventID int64 `json:"event_id"`
			}
			require.NoError(t, json.Unmarshal([]byte(msg.Payload), &ev))
			received = append(received, ev.EventID)
		}
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
