package redis_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	redissink "github.com/pgrelay/pgrelay/handlers/redis"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/sqlkit"
)

type wireEvent struct {
	EventID   int64           `json:"event_id"`
	Txid      uint64          `json:"txid"`
	Timestamp string          `json:"timestamp"`
	Schema    string          `json:"schema"`
	Table     string          `json:"table"`
	Action    string          `json:"action"`
	ID        json.RawMessage `json:"id"`
	Data      map[string]any  `json:"data"`
	Changes   []any           `json:"changes"`
}

func TestRedisPublishesEachEventOnItsTableChannel(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	dbURL := testenv.NewMigratedDatabase(t)
	pool := testenv.Pool(t, dbURL)
	// A table name of its own, so that parallel tests sharing the Redis
	// server do not hear each other.
	table := testenv.UniqueName("Users ")
	_, err := pool.Exec(ctx, `CREATE TABLE "`+table+`" (id int PRIMARY KEY, name text)`)
	require.NoError(t, err)
	_, err = sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: table})
	require.NoError(t, err)

	rdb := testenv.Redis(t)
	sub := rdb.Subscribe(ctx, "public."+table+".cdc_events")
	defer sub.Close()
	_, err = sub.Receive(ctx) // subscription confirmed
	require.NoError(t, err)

	r, err := relay.New(relay.Config{DatabaseURL: dbURL}, newHandler(t, redissink.Config{Client: rdb}))
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	defer r.Close(context.Background()) //nolint:errcheck

	_, err = pool.Exec(ctx, `INSERT INTO "`+table+`" VALUES (7, 'a')`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE "`+table+`" SET name = 'b'`)
	require.NoError(t, err)

	var got []wireEvent
	for len(got) < 2 {
		msg, err := sub.ReceiveMessage(ctx)
		require.NoError(t, err)
		var e wireEvent
		require.NoError(t, json.Unmarshal([]byte(msg.Payload), &e), msg.Payload)
		got = append(got, e)
	}
	require.Equal(t, "insert", got[0].Action)
	require.Equal(t, "update", got[1].Action)
	for _, e := range got {
		require.Equal(t, "public", e.Schema)
		require.Equal(t, table, e.Table)
		require.JSONEq(t, "7", string(e.ID))
		_, err := time.Parse("2006-01-02T15:04:05.000000Z", e.Timestamp)
		require.NoError(t, err, e.Timestamp)
		require.NotZero(t, e.Txid)
	}
	require.Equal(t, map[string]any{"id": 7.0, "name": "b"}, got[1].Data)
	require.Equal(t, []any{map[string]any{"field": "name", "old": "a", "new": "b"}}, got[1].Changes)
	require.Nil(t, got[0].Changes)
}

// newHandler is redissink.New for a configuration the test knows is valid.
func newHandler(t testing.TB, cfg redissink.Config) *redissink.Handler {
	t.Helper()
	h, err := redissink.New(cfg)
	require.NoError(t, err)
	return h
}

func TestRedisCustomChannel(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	channel := testenv.UniqueName("all-changes-")
	sub := rdb.Subscribe(ctx, channel)
	defer sub.Close()
	_, err := sub.Receive(ctx)
	require.NoError(t, err)

	h := newHandler(t, redissink.Config{Client: rdb, Channel: func(*relay.Event) string { return channel }})
	events := []relay.Event{
		{ID: 1, Schema: "a", Table: "x", Action: relay.ActionInsert, Key: json.RawMessage("1")},
		{ID: 2, Schema: "b", Table: "y", Action: relay.ActionDelete, Key: json.RawMessage("2")},
	}
	require.NoError(t, h.OnEvents(ctx, events))
	for _, want := range events {
		msg, err := sub.ReceiveMessage(ctx)
		require.NoError(t, err)
		var e wireEvent
		require.NoError(t, json.Unmarshal([]byte(msg.Payload), &e))
		require.Equal(t, want.ID, e.EventID)
	}
}

// TestRedisMixedBatchChannels: in one batch, each event goes to its own
// channel however tables, schemas and custom channels alternate (the
// handler reuses a channel's name between events of one table).
func TestRedisMixedBatchChannels(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	a, b := testenv.UniqueName("a"), testenv.UniqueName("b")
	msg := testenv.UniqueName("orders") + ".shipped"
	row := func(id int64, schema, table string) relay.Event {
		return relay.Event{ID: id, Txid: 1, Schema: schema, Table: table, Action: relay.ActionInsert,
			Key: []byte(fmt.Sprint(id)), Data: []byte(fmt.Sprintf(`{"id":%d}`, id))}
	}
	message := func(id int64, channel string) relay.Event {
		return relay.Event{ID: id, Txid: 1, Action: relay.ActionMessage, CustomChannel: channel, Data: []byte(`{}`)}
	}
	events := []relay.Event{
		row(1, "public", a), row(2, "public", a), row(3, "other", a), row(4, "public", b),
		message(5, msg), message(6, msg), message(7, msg+".2"), row(8, "public", a),
	}
	want := map[string][]int64{
		"public." + a + ".cdc_events": {1, 2, 8},
		"other." + a + ".cdc_events":  {3},
		"public." + b + ".cdc_events": {4},
		msg:                           {5, 6},
		msg + ".2":                    {7},
	}
	var channels []string
	for c := range want {
		channels = append(channels, c)
	}
	sub := rdb.Subscribe(ctx, channels...)
	defer sub.Close()
	for range channels {
		_, err := sub.Receive(ctx) // each subscription confirmed
		require.NoError(t, err)
	}
	require.NoError(t, newHandler(t, redissink.Config{Client: rdb}).OnEvents(ctx, events))
	got := map[string][]int64{}
	for range events {
		m, err := sub.ReceiveMessage(ctx)
		require.NoError(t, err)
		var e struct {
			EventID int64 `json:"event_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(m.Payload), &e), m.Payload)
		got[m.Channel] = append(got[m.Channel], e.EventID)
	}
	require.Equal(t, want, got)
}
