package nats_test

import (
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	natssink "github.com/pgrelay/pgrelay/handlers/nats"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

func TestPublishesEveryEventInOrderPerSubject(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	cfg := testConfig(t, natsURL())
	cfg.MaxPending = 7 // smaller than a batch: the window is waited on
	h := newHandler(t, cfg)
	require.NoError(t, h.OnStart(ctx))

	var batch []relay.Event
	a, b := rows("a", span(1, 300)...), rows("b", span(301, 600)...)
	for i := range a {
		batch = append(batch, a[i], b[i])
	}
	dctx := relay.WithDelivery(ctx, relay.Delivery{Name: "n", Token: 1})
	require.NoError(t, h.OnEvents(dctx, batch[:250]))
	require.NoError(t, h.OnEvents(dctx, batch[250:]))

	js := jetStream(t, natsURL())
	msgs := readStream(t, ctx, js, cfg.Stream)
	prefix := strings.ToLower(cfg.Stream)
	require.Equal(t, map[string][]int64{
		prefix + ".s.a.cdc_events": span(1, 300),
		prefix + ".s.b.cdc_events": span(301, 600),
	}, idsBySubject(msgs))
	require.Equal(t, "n:1", msgs[0].MsgID)
	want, err := json.Marshal(&batch[0])
	require.NoError(t, err)
	require.JSONEq(t, string(want), msgs[0].Payload, "the payload is the event's JSON")

	// The stream the handler created.
	s, err := js.Stream(ctx, cfg.Stream)
	require.NoError(t, err)
	require.Equal(t, cfg.Subjects, s.CachedInfo().Config.Subjects)
	require.Equal(t, natssink.DefaultDuplicateWindow, s.CachedInfo().Config.Duplicates)
}

func TestCustomChannels(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	cfg := testConfig(t, natsURL())
	h := newHandler(t, cfg)
	prefix := strings.ToLower(cfg.Stream)

	msg := func(id int64, channel string) relay.Event {
		return relay.Event{ID: id, Txid: 9, Action: relay.ActionMessage, CustomChannel: channel,
			Data: json.RawMessage(`{"order_id":42}`)}
	}
	events := append(rows("t", 1), msg(2, "orders.shipped"), msg(3, "orders.paid"))
	require.NoError(t, h.OnEvents(ctx, events)) // no Delivery: name "default"

	js := jetStream(t, natsURL())
	msgs := readStream(t, ctx, js, cfg.Stream)
	require.Len(t, msgs, 3)
	require.Equal(t, prefix+".orders.shipped", msgs[1].Subject)
	require.Equal(t, prefix+".orders.paid", msgs[2].Subject)
	require.Equal(t, "default:2", msgs[1].MsgID)
	require.Contains(t, msgs[1].Payload, `"channel":"orders.shipped"`)

	// A channel the stream does not cover fails before anything is sent,
	// permanently, naming the subject.
	err := h.OnEvents(ctx, append(rows("t", 4), msg(5, "invoices.sent")))
	var perm *relay.PermanentError
	require.ErrorAs(t, err, &perm)
	require.ErrorContains(t, err, prefix+".invoices.sent")
	require.ErrorContains(t, err, "Config.Subjects")
	require.EqualValues(t, 3, streamCount(t, ctx, js, cfg.Stream))
}

func TestRepeatedBatchIsDropped(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	cfg := testConfig(t, natsURL())
	h := newHandler(t, cfg)
	dctx := relay.WithDelivery(ctx, relay.Delivery{Name: "n", Token: 1})
	require.NoError(t, h.OnStart(ctx))
	require.NoError(t, h.OnEvents(dctx, rows("t", span(1, 100)...)))
	require.NoError(t, h.OnEvents(dctx, rows("t", span(1, 100)...)))
	// A successor process (a fresh handler) replays part of it with newer
	// events.
	h2 := newHandler(t, cfg)
	require.NoError(t, h2.OnStart(ctx))
	require.NoError(t, h2.OnEvents(dctx, rows("t", span(51, 150)...)))

	msgs := readStream(t, ctx, jetStream(t, natsURL()), cfg.Stream)
	require.Equal(t, map[string][]int64{strings.ToLower(cfg.Stream) + ".s.t.cdc_events": span(1, 150)}, idsBySubject(msgs))
}

func TestExistingStreamGetsMissingSubjects(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	cfg := testConfig(t, natsURL())
	prefix := strings.ToLower(cfg.Stream)
	first := cfg
	first.Subjects = []string{prefix + ".*.*.cdc_events"}
	first.DuplicateWindow = time.Minute
	require.NoError(t, newHandler(t, first).OnStart(ctx))

	cfg.Subjects = []string{prefix + ".s.t.cdc_events", prefix + ".orders.*"} // the first is covered already
	require.NoError(t, newHandler(t, cfg).OnStart(ctx))
	s, err := jetStream(t, natsURL()).Stream(ctx, cfg.Stream)
	require.NoError(t, err)
	require.Equal(t, []string{prefix + ".*.*.cdc_events", prefix + ".orders.*"}, s.CachedInfo().Config.Subjects)
	require.Equal(t, time.Minute, s.CachedInfo().Config.Duplicates, "the rest of the stream's configuration is kept")
}

func TestUnreachableServerFailsAtStart(t *testing.T) {
	t.Parallel()
	h := newHandler(t, natssink.Config{URL: "nats://127.0.0.1:1", Timeout: 200 * time.Millisecond})
	require.ErrorContains(t, h.OnStart(testenv.Context(t)), "connect to nats://127.0.0.1:1")
}

// TestBrokerRestart kills a throw-away nats-server in the middle of a
// batch and starts it again on the same store: the handler fails until it
// is back, then succeeds, and the stream holds every event once, in order.
func TestBrokerRestart(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	srv := startNATSServer(t)
	cfg := testConfig(t, srv.url())
	cfg.Timeout = time.Second
	h := newHandler(t, cfg)
	require.NoError(t, h.OnStart(ctx))
	dctx := relay.WithDelivery(ctx, relay.Delivery{Name: "n", Token: 1})
	require.NoError(t, h.OnEvents(dctx, rows("t", span(1, 1000)...)))

	const total = 200_000
	var failures, attempts atomic.Int64
	done := make(chan error, 1)
	go func() {
		// As the relay does: the same batch until it goes through.
		batch := rows("t", span(1001, total)...)
		for {
			attempts.Add(1)
			err := h.OnEvents(dctx, batch)
			if err == nil || ctx.Err() != nil {
				done <- err
				return
			}
			failures.Add(1)
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}()

	js := jetStream(t, srv.url())
	testenv.WaitFor(t, ctx, "part of the batch stored", func() bool {
		return streamCount(t, ctx, js, cfg.Stream) > 5000
	})
	srv.kill()
	testenv.WaitFor(t, ctx, "the handler to fail", func() bool { return failures.Load() > 0 })
	srv.start()
	require.NoError(t, <-done)
	t.Logf("broker restart: %d attempts of the batch, %d failed", attempts.Load(), failures.Load())

	js = jetStream(t, srv.url())
	msgs := readStream(t, ctx, js, cfg.Stream)
	require.Equal(t, map[string][]int64{strings.ToLower(cfg.Stream) + ".s.t.cdc_events": span(1, total)}, idsBySubject(msgs),
		"every event once, in order")
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  natssink.Config
		want string
	}{
		{natssink.Config{}, "Config.URL is required"},
		{natssink.Config{URL: "redis://127.0.0.1:6379"}, "Config.URL"},
		{natssink.Config{URL: "nats://"}, "has no host"},
		{natssink.Config{URL: "nats://a:4222,http://b"}, `"http://b"`},
		{natssink.Config{URL: "nats://u:secret@a:4222,http://b"}, "Config.URL"},
		{natssink.Config{URL: "nats://u:secret@a:4222,nats://u:secret@b:%zz"}, "is not a URL"},
		{natssink.Config{URL: "nats://a", Stream: "a.b"}, `Config.Stream "a.b"`},
		{natssink.Config{URL: "nats://a", Subjects: []string{"a..b"}}, `Config.Subjects: "a..b"`},
		{natssink.Config{URL: "nats://a", Subjects: []string{">.a"}}, `Config.Subjects: ">.a"`},
		{natssink.Config{URL: "nats://a", DuplicateWindow: -1}, "Config.DuplicateWindow"},
		{natssink.Config{URL: "nats://a", MaxPending: -1}, "Config.MaxPending"},
		{natssink.Config{URL: "nats://a", Timeout: -time.Second}, "Config.Timeout"},
	} {
		_, err := natssink.New(tc.cfg)
		require.ErrorContains(t, err, tc.want, "%+v", tc.cfg)
		require.NotContains(t, err.Error(), "secret")
	}
	h, err := natssink.New(natssink.Config{URL: "nats://127.0.0.1:4222"})
	require.NoError(t, err)
	c := h.Config()
	require.Equal(t, "PGRELAY", c.Stream)
	require.Equal(t, []string{"*.*.cdc_events"}, c.Subjects)
	require.Equal(t, 2*time.Minute, c.DuplicateWindow)
	require.Equal(t, 1000, c.MaxPending)
	require.Equal(t, 5*time.Second, c.Timeout)
	e := relay.Event{Schema: "public", Table: "users", Action: relay.ActionInsert}
	require.Equal(t, "public.users.cdc_events", c.Subject(&e))
}

func TestConfigFromURL(t *testing.T) {
	t.Parallel()
	cfg, err := natssink.ConfigFromURL("nats://u:p@host:4222?stream=X&subject=*.*.cdc_events&subject=orders.>&duplicate_window=10m&max_pending=50&timeout=2s")
	require.NoError(t, err)
	require.Equal(t, "nats://u:p@host:4222", cfg.URL)
	require.Equal(t, "X", cfg.Stream)
	require.Equal(t, []string{"*.*.cdc_events", "orders.>"}, cfg.Subjects)
	require.Equal(t, 10*time.Minute, cfg.DuplicateWindow)
	require.Equal(t, 50, cfg.MaxPending)
	require.Equal(t, 2*time.Second, cfg.Timeout)

	cfg, err = natssink.ConfigFromURL("nats://host:4222")
	require.NoError(t, err)
	require.Equal(t, natssink.Config{URL: "nats://host:4222"}, cfg)

	for raw, want := range map[string]string{
		"nats://host?strem=X":           `parameter "strem"`,
		"nats://host?max_pending=lots":  "max_pending",
		"nats://host?timeout=5":         "timeout",
		"nats://host?stream=a.b":        "Config.Stream",
		"http://host:4222?stream=X":     "Config.URL",
		"nats://host?duplicate_window=": "duplicate_window",
		"nats://u:secret@host:%zz":      "is not a URL",
	} {
		_, err := natssink.ConfigFromURL(raw)
		require.ErrorContains(t, err, want, raw)
		require.NotContains(t, err.Error(), "secret", raw)
	}
}
