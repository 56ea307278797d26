package redis_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	redissink "github.com/pgrelay/pgrelay/handlers/redis"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

// events returns events with the given ids, all routed to one stream by
// the handler's Channel.
func events(ids ...int64) []relay.Event {
	out := make([]relay.Event, len(ids))
	for i, id := range ids {
		out[i] = relay.Event{ID: id, Txid: 1, Schema: "s", Table: "t", Action: relay.ActionInsert,
			Key: json.RawMessage(fmt.Sprint(id)), Data: json.RawMessage(fmt.Sprintf(`{"id":%d}`, id))}
	}
	return out
}

// streamSink returns a stream-mode handler appending everything to a
// stream of the test's own, and that stream's name.
func streamSink(t testing.TB, rdb goredis.UniversalClient, mode redissink.Mode) (*redissink.Handler, string) {
	t.Helper()
	stream := testenv.UniqueName("pgrelay-test-stream-")
	t.Cleanup(func() {
		rdb.Del(context.Background(), stream, redissink.BookKey(stream, "n"))
	})
	return newHandler(t, redissink.Config{Client: rdb, Mode: mode,
		Channel: func(*relay.Event) string { return stream }}), stream
}

func TestStreamAppendsEachEventOnce(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	h, stream := streamSink(t, rdb, redissink.ModeStream)
	dctx := relay.WithDelivery(ctx, relay.Delivery{Name: "n", Token: 1})

	require.NoError(t, h.OnConnect(ctx))
	require.NoError(t, h.OnEvents(dctx, events(1, 2, 3)))
	// Handed out again before progress was saved (a retry): nothing new.
	require.NoError(t, h.OnEvents(dctx, events(1, 2, 3)))
	require.Equal(t, []int64{1, 2, 3}, testenv.StreamEventIDs(t, ctx, rdb, stream))

	// A successor process (a fresh handler) after a crash replays the
	// unsaved batch in another order, mixed with newer events.
	h2, err := redissink.New(h.Config())
	require.NoError(t, err)
	require.NoError(t, h2.OnConnect(ctx))
	d2 := relay.WithDelivery(ctx, relay.Delivery{Name: "n", Token: 2})
	require.NoError(t, h2.OnEvents(d2, events(0, 3, 1)))
	require.NoError(t, h2.OnEvents(d2, events(4, 2)))
	require.Equal(t, []int64{1, 2, 3, 0, 4}, testenv.StreamEventIDs(t, ctx, rdb, stream))

	// Once progress is saved, the bookkeeping is emptied with the next batch.
	h2.Checkpoint(relay.Delivery{Name: "n", Token: 2})
	require.NoError(t, h2.OnEvents(d2, events(5)))
	h2.Checkpoint(relay.Delivery{Name: "n", Token: 2})
	require.NoError(t, h2.OnClose(ctx))
	book, err := rdb.HGetAll(ctx, redissink.BookKey(stream, "n")).Result()
	require.NoError(t, err)
	require.Equal(t, map[string]string{"token": "2"}, book)
	require.Equal(t, []int64{1, 2, 3, 0, 4, 5}, testenv.StreamEventIDs(t, ctx, rdb, stream))

	// The predecessor, had it survived unaware, is fenced off.
	err = h.OnEvents(dctx, events(6))
	require.ErrorIs(t, err, redissink.ErrFenced)
	require.Equal(t, []int64{1, 2, 3, 0, 4, 5}, testenv.StreamEventIDs(t, ctx, rdb, stream))
}

func TestStreamSessionRestartKeepsUnsavedRecords(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	h, stream := streamSink(t, rdb, redissink.ModeStream)
	d := relay.Delivery{Name: "n", Token: 1}
	dctx := relay.WithDelivery(ctx, d)

	require.NoError(t, h.OnConnect(ctx))
	require.NoError(t, h.OnEvents(dctx, events(1, 2)))
	// The session ends before its progress is saved; the next one starts
	// from older progress and saves a batch that does not include 2.
	require.NoError(t, h.OnConnect(ctx))
	require.NoError(t, h.OnEvents(dctx, events(1)))
	h.Checkpoint(d)
	require.NoError(t, h.OnEvents(dctx, events(3, 2)))
	require.Equal(t, []int64{1, 2, 3}, testenv.StreamEventIDs(t, ctx, rdb, stream))
}

func TestStreamMaxLenTrims(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	stream := testenv.UniqueName("pgrelay-test-stream-")
	t.Cleanup(func() { rdb.Del(context.Background(), stream) })
	h := newHandler(t, redissink.Config{Client: rdb, Mode: redissink.ModeStream, StreamMaxLen: 100,
		Channel: func(*relay.Event) string { return stream }})
	for i := range 10 {
		batch := make([]int64, 100)
		for j := range batch {
			batch[j] = int64(i*100 + j)
		}
		require.NoError(t, h.OnEvents(ctx, events(batch...)))
	}
	n, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, int64(100), "at least MAXLEN entries kept")
	require.Less(t, n, int64(1000), "older entries trimmed")
	ids := testenv.StreamEventIDs(t, ctx, rdb, stream)
	require.Equal(t, int64(999), ids[len(ids)-1], "the newest kept")
}

func TestBothModePublishesWhatItAppends(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	h, stream := streamSink(t, rdb, redissink.ModeBoth)
	sub := rdb.Subscribe(ctx, stream)
	defer sub.Close()
	_, err := sub.Receive(ctx)
	require.NoError(t, err)

	dctx := relay.WithDelivery(ctx, relay.Delivery{Name: "n", Token: 1})
	require.NoError(t, h.OnConnect(ctx))
	require.NoError(t, h.OnEvents(dctx, events(5, 3, 9)))
	require.NoError(t, h.OnEvents(dctx, events(3, 9, 7))) // a replay: only 7 is new
	var published []int64
	for len(published) < 4 {
		msg, err := sub.ReceiveMessage(ctx)
		require.NoError(t, err)
		var ev struct {
			EventID int64 `json:"event_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(msg.Payload), &ev))
		published = append(published, ev.EventID)
	}
	require.Equal(t, []int64{5, 3, 9, 7}, published)
	require.Equal(t, published, testenv.StreamEventIDs(t, ctx, rdb, stream))
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	rdb := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	for _, tc := range []struct {
		cfg  redissink.Config
		want string
	}{
		{redissink.Config{}, "Config.Client is required"},
		{redissink.Config{Client: rdb, Mode: "queue"}, `Config.Mode "queue"`},
		{redissink.Config{Client: rdb, PubSub: "loud"}, `Config.PubSub "loud"`},
	} {
		_, err := redissink.New(tc.cfg)
		require.ErrorContains(t, err, tc.want)
	}
	h, err := redissink.New(redissink.Config{Client: rdb})
	require.NoError(t, err)
	require.Equal(t, redissink.ModePubSub, h.Config().Mode)
	require.Equal(t, redissink.PubSubClassic, h.Config().PubSub)
	require.EqualValues(t, redissink.DefaultStreamMaxLen, h.Config().StreamMaxLen)
}
