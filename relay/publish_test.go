package relay_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// TestRelayDeliversCustomEvents: events published with cdc.publish reach the
// handlers in order with their transaction's row events, and Redis on their
// channel verbatim, as the documented JSON; a rolled-back one never does.
func TestRelayDeliversCustomEvents(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	channel := testenv.UniqueName("orders.shipped.")
	rdb := testenv.Redis(t)
	sub := rdb.Subscribe(ctx, channel)
	defer sub.Close()
	_, err := sub.Receive(ctx)
	require.NoError(t, err)
	c := newCollector()
	f.startRelay(t, relay.Config{}, redisSink(t, rdb), c)

	lost, err := f.pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, sqlkit.Publish(ctx, lost, channel, map[string]string{"lost": "yes"}))
	require.NoError(t, lost.Rollback(ctx))

	tx, err := f.pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO items VALUES (1, 'a')`)
	require.NoError(t, err)
	require.NoError(t, sqlkit.Publish(ctx, tx, channel, map[string]int{"order_id": 42}))
	_, err = tx.Exec(ctx, `INSERT INTO items VALUES (2, 'b')`)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))

	events := c.waitCount(t, ctx, 3)
	require.Equal(t, []relay.Action{relay.ActionInsert, relay.ActionMessage, relay.ActionInsert},
		[]relay.Action{events[0].Action, events[1].Action, events[2].Action})
	msg := events[1]
	require.Equal(t, channel, msg.CustomChannel)
	require.Empty(t, msg.Schema+msg.Table)
	require.JSONEq(t, `{"order_id": 42}`, string(msg.Data))
	require.Equal(t, events[0].Txid, msg.Txid)

	got, err := sub.ReceiveMessage(ctx)
	require.NoError(t, err)
	require.Equal(t, channel, got.Channel)
	require.Equal(t, string(msg.AppendJSON(nil)), got.Payload)
	require.Contains(t, got.Payload, `"action":"message","channel":"`+channel+`","data":{"order_id":42}}`)
}
