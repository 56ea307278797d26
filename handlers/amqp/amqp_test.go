package amqp_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	amqpsink "github.com/pgrelay/pgrelay/handlers/amqp"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// brokerURL is the shared RabbitMQ the tests use: TEST_AMQP_URL, or the
// one every machine of this project runs.
func brokerURL() string {
	if u := os.Getenv("TEST_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// admin opens a connection and channel of the test's own on url, to set up
// and inspect what the handler publishes to, closed when the test ends.
func admin(t testing.TB, url string) *amqp091.Channel {
	t.Helper()
	conn, err := amqp091.Dial(url)
	require.NoError(t, err, "RabbitMQ at %s (TEST_AMQP_URL)", relay.RedactURL(url))
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	return ch
}

// topology declares an exchange and a queue bound to it with bindingKey,
// both named for this test alone, and deletes them when the test ends.
func topology(t testing.TB, url, bindingKey string, queueArgs amqp091.Table) (ch *amqp091.Channel, exchange, queue string) {
	t.Helper()
	ch = admin(t, url)
	exchange = testenv.UniqueName("pgrelay-test-x-")
	queue = testenv.UniqueName("pgrelay-test-q-")
	require.NoError(t, ch.ExchangeDeclare(exchange, amqp091.ExchangeTopic, true, false, false, false, nil))
	_, err := ch.QueueDeclare(queue, true, false, false, false, queueArgs)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(queue, bindingKey, exchange, false, nil))
	t.Cleanup(func() { cleanup(url, exchange, queue) })
	return ch, exchange, queue
}

// cleanup deletes the exchange and queue (if any) on a connection of its own: the
// test's may be closed by then.
func cleanup(url, exchange, queue string) {
	conn, err := amqp091.Dial(url)
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	// A failed delete closes the channel: the exchange first, and a
	// queue only when there is one.
	_ = ch.ExchangeDelete(exchange, false, false)
	if queue != "" {
		_, _ = ch.QueueDelete(queue, false, false, false)
	}
}

// receive returns the next n messages of queue, acknowledged, failing the
// test if they do not come within ctx.
func receive(t testing.TB, ctx context.Context, ch *amqp091.Channel, queue string, n int) []amqp091.Delivery {
	t.Helper()
	tag := testenv.UniqueName("consumer-")
	deliveries, err := ch.Consume(queue, tag, true, false, false, false, nil)
	require.NoError(t, err)
	defer func() { _ = ch.Cancel(tag, false) }()
	var got []amqp091.Delivery
	for len(got) < n {
		select {
		case d, ok := <-deliveries:
			require.True(t, ok, "the consumer was closed after %d of %d messages", len(got), n)
			got = append(got, d)
		case <-ctx.Done():
			require.FailNow(t, "timed out", "%d of %d messages arrived", len(got), n)
		}
	}
	return got
}

// queueLen is the number of ready messages in queue.
func queueLen(t testing.TB, ch *amqp091.Channel, queue string) int {
	t.Helper()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	require.NoError(t, err)
	return q.Messages
}

func newHandler(t testing.TB, cfg amqpsink.Config) *amqpsink.Handler {
	t.Helper()
	h, err := amqpsink.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.OnClose(context.Background()) })
	return h
}

// ids returns the event_id of each message.
func ids(t testing.TB, msgs []amqp091.Delivery) []int64 {
	t.Helper()
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		var e struct {
			EventID int64 `json:"event_id"`
		}
		require.NoError(t, json.Unmarshal(m.Body, &e), string(m.Body))
		out[i] = e.EventID
	}
	return out
}

func events(from, to int64) []relay.Event {
	var out []relay.Event
	for id := from; id <= to; id++ {
		out = append(out, relay.Event{ID: id, Txid: uint64(id), Schema: "public", Table: "t",
			Action: relay.ActionInsert, Key: json.RawMessage("1"), Data: json.RawMessage(`{"id": 1}`)})
	}
	return out
}

func TestPublishesEveryEventInOrder(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	url := brokerURL()
	ch, exchange, queue := topology(t, url, "#", nil)
	h := newHandler(t, amqpsink.Config{URL: url, Exchange: exchange})
	require.NoError(t, h.OnStart(ctx))

	ts := time.Date(2026, 11, 22, 10, 1, 2, 123456000, time.UTC)
	batch := []relay.Event{
		{ID: 11, Txid: 5, Timestamp: ts, Schema: "public", Table: "users", Action: relay.ActionInsert,
			Key: json.RawMessage("7"), Data: json.RawMessage(`{"id": 7, "name": "a"}`)},
		{ID: 12, Txid: 5, Timestamp: ts, Schema: "public", Table: "users", Action: relay.ActionUpdate,
			Key: json.RawMessage("7"), Data: json.RawMessage(`{"id": 7, "name": "b"}`),
			Changes: json.RawMessage(`[{"field": "name", "old": "a", "new": "b"}]`)},
		{ID: 13, Txid: 6, Timestamp: ts, Schema: "billing", Table: "Invoices", Action: relay.ActionDelete,
			Key: json.RawMessage(`{"a": 1, "b": 2}`), Data: json.RawMessage(`{"a": 1, "b": 2}`)},
		{ID: 14, Txid: 6, Timestamp: ts, Action: relay.ActionMessage, CustomChannel: "orders.shipped",
			Data: json.RawMessage(`{"order_id": 42}`)},
		{ID: 15, Txid: 7, Timestamp: ts, Schema: "public", Table: "users", Action: relay.ActionTruncate},
	}
	require.NoError(t, h.OnEvents(relay.WithDelivery(ctx, relay.Delivery{Name: "orders", Token: 1}), batch))
	// Called outside a relay, the relay name is the default one.
	require.NoError(t, h.OnEvents(ctx, batch[:1]))

	got := receive(t, ctx, ch, queue, len(batch)+1)
	wantKeys := []string{"public.users.insert", "public.users.update", "billing.Invoices.delete",
		"orders.shipped", "public.users.truncate", "public.users.insert"}
	wantIDs := []string{"orders:11", "orders:12", "orders:13", "orders:14", "orders:15", "default:11"}
	for i, m := range got {
		e := batch[i%len(batch)]
		require.Equal(t, exchange, m.Exchange)
		require.Equal(t, wantKeys[i], m.RoutingKey, "message %d", i)
		require.Equal(t, wantIDs[i], m.MessageId, "message %d", i)
		require.Equal(t, amqp091.Persistent, m.DeliveryMode, "message %d", i)
		require.Equal(t, "application/json", m.ContentType)
		require.True(t, ts.Truncate(time.Second).Equal(m.Timestamp), "timestamp %s", m.Timestamp) // AMQP keeps seconds
		want, err := e.MarshalJSON()
		require.NoError(t, err)
		require.JSONEq(t, string(want), string(m.Body))
	}
	require.Equal(t, []int64{11, 12, 13, 14, 15, 11}, ids(t, got))
}

func TestCustomRoutingKey(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	url := brokerURL()
	ch, exchange, queue := topology(t, url, "cdc.users", nil)
	h := newHandler(t, amqpsink.Config{URL: url, Exchange: exchange,
		RoutingKey: func(e *relay.Event) string { return "cdc." + e.Table }})
	require.NoError(t, h.OnEvents(ctx, []relay.Event{
		{ID: 1, Schema: "public", Table: "users", Action: relay.ActionInsert, Key: json.RawMessage("1")},
		{ID: 2, Schema: "public", Table: "other", Action: relay.ActionInsert, Key: json.RawMessage("2")},
		{ID: 3, Schema: "public", Table: "users", Action: relay.ActionDelete, Key: json.RawMessage("1")},
	}))
	require.Equal(t, []int64{1, 3}, ids(t, receive(t, ctx, ch, queue, 2)))
	require.Zero(t, queueLen(t, ch, queue))
}

// TestDeclaresTheExchange: a missing exchange is declared durable and
// topic at connect.
func TestDeclaresTheExchange(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	url := brokerURL()
	exchange := testenv.UniqueName("pgrelay-test-x-")
	t.Cleanup(func() { cleanup(url, exchange, "") })
	h := newHandler(t, amqpsink.Config{URL: url, Exchange: exchange})
	require.NoError(t, h.OnStart(ctx))
	ch := admin(t, url)
	// A passive declare with other settings would close the channel; this
	// one only checks that it exists, and the active one that it is a
	// durable topic exchange (another kind would fail it).
	require.NoError(t, ch.ExchangeDeclarePassive(exchange, amqp091.ExchangeTopic, true, false, false, false, nil))
	require.NoError(t, ch.ExchangeDeclare(exchange, amqp091.ExchangeTopic, true, false, false, false, nil))

	// An exchange of another kind under the name fails the start, naming it.
	other := testenv.UniqueName("pgrelay-test-x-")
	t.Cleanup(func() { cleanup(url, other, "") })
	require.NoError(t, ch.ExchangeDeclare(other, amqp091.ExchangeFanout, true, false, false, false, nil))
	h2 := newHandler(t, amqpsink.Config{URL: url, Exchange: other})
	err := h2.OnStart(ctx)
	require.Error(t, err)
	require.Contains(t, err.Error(), other)
	require.Contains(t, err.Error(), "PRECONDITION_FAILED")
}

// TestExchangeDeletedMeanwhile: the broker refuses a batch to an exchange
// deleted since the handler connected; the batch fails rather than
// counting as delivered. The next batch reconnects, which declares the
// exchange again.
func TestExchangeDeletedMeanwhile(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	url := brokerURL()
	ch, exchange, queue := topology(t, url, "#", nil)
	h := newHandler(t, amqpsink.Config{URL: url, Exchange: exchange})
	require.NoError(t, h.OnStart(ctx))
	require.NoError(t, ch.ExchangeDelete(exchange, false, false))

	// The broker's NOT_FOUND closes the channel: depending on when that
	// arrives the error names it or only the closed channel, so only the
	// outcome is checked.
	require.Error(t, h.OnEvents(ctx, events(1, 3)))
	require.Zero(t, queueLen(t, ch, queue))

	// The retry connects again and declares the exchange; the queue's
	// binding went with the old one.
	require.NoError(t, h.OnConnect(ctx))
	require.NoError(t, ch.QueueBind(queue, "#", exchange, false, nil))
	require.NoError(t, h.OnEvents(ctx, events(1, 3)))
	require.Equal(t, []int64{1, 2, 3}, ids(t, receive(t, ctx, ch, queue, 3)))
}

// TestNackFailsTheBatch: a queue that rejects what overflows it makes the
// broker nack those messages, and the batch is not delivered: OnEvents
// fails, and the relay would hand the batch out again.
func TestNackFailsTheBatch(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	url := brokerURL()
	ch, exchange, queue := topology(t, url, "#", amqp091.Table{"x-max-length": int32(2), "x-overflow": "reject-publish"})
	h := newHandler(t, amqpsink.Config{URL: url, Exchange: exchange})

	err := h.OnEvents(ctx, events(1, 5))
	require.Error(t, err)
	require.Contains(t, err.Error(), "did not take event 3")
	require.Equal(t, 2, queueLen(t, ch, queue))

	// Once consumers have made room, the same batch goes through.
	_, err = ch.QueuePurge(queue, false)
	require.NoError(t, err)
	require.NoError(t, h.OnEvents(ctx, events(1, 2)))
	require.Equal(t, []int64{1, 2}, ids(t, receive(t, ctx, ch, queue, 2)))
}

func TestRelayEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	dbURL := testenv.NewMigratedDatabase(t)
	pool := testenv.Pool(t, dbURL)
	table := testenv.UniqueName("items_")
	_, err := pool.Exec(ctx, `CREATE TABLE "`+table+`" (id int PRIMARY KEY, name text)`)
	require.NoError(t, err)
	_, err = sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: table})
	require.NoError(t, err)

	url := brokerURL()
	ch, exchange, queue := topology(t, url, "public."+table+".*", nil)

	r, err := relay.New(relay.Config{DatabaseURL: dbURL, Name: "e2e"}, newHandler(t, amqpsink.Config{URL: url, Exchange: exchange}))
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	defer r.Close(context.Background()) //nolint:errcheck

	const n = 200
	for i := 1; i <= n; i += 50 {
		_, err := pool.Exec(ctx, `INSERT INTO "`+table+`" SELECT g, 'x' FROM generate_series($1::int, $2::int) g`, i, i+49)
		require.NoError(t, err)
	}
	_, err = pool.Exec(ctx, `UPDATE "`+table+`" SET name = 'y' WHERE id = 1`)
	require.NoError(t, err)

	got := receive(t, ctx, ch, queue, n+1)
	for i, m := range got {
		var e struct {
			EventID int64  `json:"event_id"`
			Action  string `json:"action"`
			ID      int    `json:"id"`
		}
		require.NoError(t, json.Unmarshal(m.Body, &e))
		wantAction, wantID := "insert", i+1
		if i == n {
			wantAction, wantID = "update", 1
		}
		require.Equal(t, wantAction, e.Action, "message %d", i)
		require.Equal(t, wantID, e.ID, "message %d", i)
		require.Equal(t, "public."+table+"."+wantAction, m.RoutingKey)
		require.Equal(t, "e2e:"+strconv.FormatInt(e.EventID, 10), m.MessageId)
		require.Equal(t, amqp091.Persistent, m.DeliveryMode)
	}
}
