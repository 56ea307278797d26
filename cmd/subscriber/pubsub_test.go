package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

func TestPubSubPrintsEachMessageAsALine(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	table := testenv.UniqueName("sub_")
	channel := "public." + table + ".cdc_events"
	r := runApp(ctx, "--redis-url", testenv.RedisURL(), "public."+table)
	r.stderr.waitFor(t, ctx, "subscribed to "+channel+"\n")
	for _, m := range []string{`{"n":1}`, `{"n":2}`} {
		require.NoError(t, rdb.Publish(ctx, channel, m).Err())
	}
	r.stdout.waitLines(t, ctx, 2)
	require.NoError(t, r.stop(t, ctx))
	require.Equal(t, "{\"n\":1}\n{\"n\":2}\n", r.stdout.String())

	err := newApp(newLineLog(), newLineLog()).Run([]string{"subscriber", "--redis-url", "redis://:secret@127.0.0.1:1"})
	require.ErrorContains(t, err, "connect to redis redis://:xxxxx@127.0.0.1:1")
}

func TestPubSubPatternAndSeveralChannels(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	prefix := testenv.UniqueName("sub_")
	r := runApp(ctx, "--redis-url", testenv.RedisURL(), prefix+"_a", "public."+prefix+"_b", "public."+prefix+"_p*")
	r.stderr.waitFor(t, ctx, "subscribed to public."+prefix+"_a.cdc_events, public."+prefix+"_b.cdc_events, public."+prefix+"_p*.cdc_events\n")
	want := []string{event(prefix+"_a", relay.ActionInsert, 1), event(prefix+"_b", relay.ActionInsert, 2), event(prefix+"_p1", relay.ActionInsert, 3)}
	for i, table := range []string{prefix + "_a", prefix + "_b", prefix + "_p1"} {
		require.NoError(t, rdb.Publish(ctx, "public."+table+".cdc_events", want[i]).Err())
	}
	assert.Equal(t, want, r.stdout.waitLines(t, ctx, 3))
	require.NoError(t, r.stop(t, ctx))
}

func TestPubSubCountAndActions(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	table := testenv.UniqueName("sub_")
	channel := "public." + table + ".cdc_events"
	r := runApp(ctx, "--redis-url", testenv.RedisURL(), "--actions", "insert,delete", "--count", "2", table)
	r.stderr.waitFor(t, ctx, "subscribed to")
	published := []string{
		event(table, relay.ActionUpdate, 1), event(table, relay.ActionInsert, 2), event(table, relay.ActionUpdate, 3),
		event(table, relay.ActionDelete, 4), event(table, relay.ActionInsert, 5),
	}
	for _, m := range published {
		require.NoError(t, rdb.Publish(ctx, channel, m).Err())
	}
	require.NoError(t, r.wait(t, ctx), "exits by itself after --count events")
	assert.Equal(t, []string{published[1], published[3]}, r.stdout.lines())
}

func TestPubSubPretty(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	table := testenv.UniqueName("sub_")
	channel := "public." + table + ".cdc_events"
	r := runApp(ctx, "--redis-url", testenv.RedisURL(), "--format", "pretty", "--count", "3", table)
	r.stderr.waitFor(t, ctx, "subscribed to")
	for _, m := range []string{event(table, relay.ActionInsert, 1), event(table, relay.ActionUpdate, 1), event(table, relay.ActionDelete, 1)} {
		require.NoError(t, rdb.Publish(ctx, channel, m).Err())
	}
	require.NoError(t, r.wait(t, ctx))
	assert.Equal(t, []string{
		"INSERT   public." + table + `[1]  id=1 name="n1"`,
		"UPDATE   public." + table + `[1]  name: "o1" → "n1"`,
		"DELETE   public." + table + `[1]  id=1 name="n1"`,
	}, r.stdout.lines(), "no colours: not a terminal")
}

// TestPubSubSharded reads SPUBLISHed messages; a single Redis 7 server has
// sharded pub/sub too.
func TestPubSubSharded(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	prefix := testenv.UniqueName("sub_")
	r := runApp(ctx, "--redis-url", testenv.RedisURL(), "--pubsub", "sharded", "--count", "2", prefix+"_a", prefix+"_b")
	r.stderr.waitFor(t, ctx, "subscribed to public."+prefix+"_a.cdc_events, public."+prefix+"_b.cdc_events (sharded pub/sub)\n")
	want := []string{event(prefix+"_a", relay.ActionInsert, 1), event(prefix+"_b", relay.ActionInsert, 2)}
	require.NoError(t, rdb.Publish(ctx, "public."+prefix+"_a.cdc_events", "classic, not received").Err())
	require.NoError(t, rdb.SPublish(ctx, "public."+prefix+"_a.cdc_events", want[0]).Err())
	r.stdout.waitLines(t, ctx, 1)
	require.NoError(t, rdb.SPublish(ctx, "public."+prefix+"_b.cdc_events", want[1]).Err())
	require.NoError(t, r.wait(t, ctx))
	assert.Equal(t, want, r.stdout.lines())
}

// TestPubSubCustomEvents: a dotted name that is not a table of schema
// public also receives the custom events published under it, verbatim.
func TestPubSubCustomEvents(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	channel := testenv.UniqueName("orders.shipped_")
	r := runApp(ctx, "--redis-url", testenv.RedisURL(), "--actions", "message", channel)
	r.stderr.waitFor(t, ctx, "subscribed to "+channel+".cdc_events, and to custom events on "+channel+"\n")
	msg := `{"event_id":1,"txid":2,"timestamp":"2026-12-02T10:00:00.000000Z","action":"message","channel":"` + channel + `","data":{"order_id":42}}`
	require.NoError(t, rdb.Publish(ctx, channel+".cdc_events", event("x", relay.ActionInsert, 1)).Err())
	require.NoError(t, rdb.Publish(ctx, channel, msg).Err())
	r.stdout.waitLines(t, ctx, 1)
	require.NoError(t, r.stop(t, ctx))
	require.Equal(t, msg+"\n", r.stdout.String())
}
