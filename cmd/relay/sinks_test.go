package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/route"
)

// TestCLIRunToEverySink: relay run --drain with NATS, RabbitMQ and a
// webhook as --sink: each gets every event.
func TestCLIRunToEverySink(t *testing.T) {
	ctx := testenv.Context(t)
	dbURL := testenv.NewDatabase(t)
	pool := testenv.Pool(t, dbURL)
	table := testenv.UniqueName("sinks_")
	_, err := pool.Exec(ctx, `CREATE TABLE `+table+` (id int PRIMARY KEY)`)
	require.NoError(t, err)
	_, _, err = runCLI(ctx, "--database-url", dbURL, "ensure-cdc", table)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO `+table+` SELECT g FROM generate_series(1, 25) g`)
	require.NoError(t, err)

	var (
		mu   sync.Mutex
		hook []json.RawMessage
	)
	srv := webhookReceiver(t, func(raw json.RawMessage) {
		mu.Lock()
		hook = append(hook, raw)
		mu.Unlock()
	})

	ch, exchange, queue := rabbitQueue(t)
	// A stream for this table's subject only: the shared server may hold
	// other streams.
	js, stream := jetStream(t)
	subject := route.Channel(route.DefaultSchema, table)

	_, _, err = runCLI(ctx, "--database-url", dbURL, "run", "--drain",
		"--sink", "nats://127.0.0.1:4222?stream="+stream+"&subject="+subject,
		"--sink", "amqp://guest:guest@127.0.0.1:5672/?exchange="+exchange,
		"--sink", srv.URL+"/hook", "--webhook-batch", "10")
	require.NoError(t, err)

	info, err := js.StreamInfo(stream)
	require.NoError(t, err)
	require.EqualValues(t, 25, info.State.Msgs, "NATS")
	msgs, err := ch.Consume(queue, "", true, true, false, false, nil)
	require.NoError(t, err)
	for range 25 {
		select {
		case <-msgs:
		case <-time.After(10 * time.Second):
			t.Fatal("RabbitMQ did not get every event")
		}
	}
	mu.Lock()
	require.Len(t, hook, 25, "webhook")
	mu.Unlock()

	_, line, err := runCLI(ctx, "--database-url", dbURL, "run", "--sink", "kafka://x:9092")
	require.Error(t, err)
	require.Contains(t, line, `invalid --sink kafka://x:9092: unknown scheme "kafka"`)
	_, line, err = runCLI(ctx, "--database-url", dbURL, "--redis-url", testenv.RedisURL(), "run", "--sink", "redis://127.0.0.1:1/0")
	require.Error(t, err)
	require.Contains(t, line, "one Redis sink at most")
}

// rabbitQueue declares a topic exchange of its own on the shared RabbitMQ
// and a queue bound to all of it, both gone when the test ends, or skips
// the test without RabbitMQ.
func rabbitQueue(t *testing.T) (ch *amqp091.Channel, exchange, queue string) {
	t.Helper()
	exchange = testenv.UniqueName("pgrelay-test-")
	conn, err := amqp091.Dial("amqp://guest:guest@127.0.0.1:5672/")
	if err != nil {
		t.Skipf("no RabbitMQ on 127.0.0.1:5672: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err = conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil))
	t.Cleanup(func() { _ = ch.ExchangeDelete(exchange, false, false) })
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(q.Name, "#", exchange, false, nil))
	return ch, exchange, q.Name
}

// jetStream connects to the shared NATS and returns a JetStream context and
// a stream name of the test's own, whose stream is deleted when the test
// ends, or skips the test without NATS.
func jetStream(t *testing.T) (js natsgo.JetStreamContext, stream string) {
	t.Helper()
	stream = testenv.UniqueName("PGRELAY_TEST_")
	nc, err := natsgo.Connect("nats://127.0.0.1:4222")
	if err != nil {
		t.Skipf("no NATS on 127.0.0.1:4222: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err = nc.JetStream()
	require.NoError(t, err)
	t.Cleanup(func() { _ = js.DeleteStream(stream) })
	return js, stream
}

// webhookReceiver serves webhook POSTs until the test ends, calling each
// with every event of every batch, in order.
func webhookReceiver(t *testing.T, each func(json.RawMessage)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var batch []json.RawMessage
		if json.Unmarshal(body, &batch) != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		for _, raw := range batch {
			each(raw)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}
