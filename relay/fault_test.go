package relay_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/faultproxy"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

// activitySignal records the kinds of a relay's activities, for tests to
// wait on (relay.Config.Observer) instead of on log text.
type activitySignal struct{ kinds chan relay.ActivityKind }

func newActivitySignal() *activitySignal {
	return &activitySignal{kinds: make(chan relay.ActivityKind, 10000)}
}

func (s *activitySignal) observe(a relay.Activity) {
	select {
	case s.kinds <- a.Kind:
	default:
	}
}

// wait returns once an activity of kind was reported after the last one
// waited for.
func (s *activitySignal) wait(t *testing.T, ctx context.Context, kind relay.ActivityKind) {
	t.Helper()
	for {
		select {
		case k := <-s.kinds:
			if k == kind {
				return
			}
		case <-ctx.Done():
			t.Fatalf("no %s activity", kind)
		}
	}
}

// count drains what was reported so far and counts the activities of kind.
func (s *activitySignal) count(kind relay.ActivityKind) int {
	n := 0
	for {
		select {
		case k := <-s.kinds:
			if k == kind {
				n++
			}
		default:
			return n
		}
	}
}

func proxied(t *testing.T, rawURL string) (*faultproxy.Proxy, string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	p, err := faultproxy.New(u.Host)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	u.Host = p.Addr()
	return p, u.String()
}

// TestRelayDetectsFrozenDatabaseNetwork puts a proxy that stops forwarding,
// without closing anything, between the relay and PostgreSQL.
func TestRelayDetectsFrozenDatabaseNetwork(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	proxy, proxyURL := proxied(t, f.url)
	acts := newActivitySignal()
	c := newCollector()
	cfg := relay.Config{
		DatabaseURL:      proxyURL,
		WatchdogInterval: 200 * time.Millisecond,
		Timeout:          500 * time.Millisecond,
		RetryInterval:    100 * time.Millisecond,
		Observer:         acts.observe,
	}
	r, err := relay.New(cfg, c)
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	defer func() { require.NoError(t, r.Close(context.Background())) }()

	f.exec(t, `INSERT INTO items SELECT g, 'before' FROM generate_series(1, 10) g`)
	c.waitCount(t, ctx, 10)

	proxy.Freeze()
	frozenAt := time.Now()
	f.exec(t, `INSERT INTO items SELECT g, 'during' FROM generate_series(11, 20) g`)
	acts.wait(t, ctx, relay.ActivityDisconnected)
	// Reported, not asserted: timings belong to benchmarks. The watchdog
	// should notice within WatchdogInterval + Timeout.
	t.Logf("frozen network detected after %s (watchdog %s + timeout %s)",
		time.Since(frozenAt).Round(time.Millisecond), cfg.WatchdogInterval, cfg.Timeout)

	proxy.Thaw()
	acts.wait(t, ctx, relay.ActivityConnected)
	f.exec(t, `INSERT INTO items SELECT g, 'after' FROM generate_series(21, 30) g`)
	times := func(ev []relay.Event) map[int64]int {
		seen := map[int64]int{}
		for _, e := range ev {
			seen[e.ID]++
		}
		return seen
	}
	c.waitUntil(t, ctx, "all 30 events", func(ev []relay.Event) bool { return len(times(ev)) == 30 })
	// Counted once the relay has nothing left to deliver, so that a
	// repeat arriving late counts too: a session repeats at most the batch
	// it had not recorded, so no event arrives more often than there were
	// connections.
	f.waitDelivered(t, ctx, "")
	events := c.snapshot()
	seen := times(events)
	require.Len(t, seen, 30, "no event that was not written")
	connects := int(c.connects.Load())
	for id, n := range seen {
		require.LessOrEqual(t, n, connects, "event %d delivered %d times over %d connections", id, n, connects)
	}
	t.Logf("%d events delivered twice over %d connections", len(events)-30, connects)
}

// TestRelayRidesOutFrozenRedis freezes the network to Redis: publishing
// fails, is retried, and nothing is lost once Redis is reachable again.
func TestRelayRidesOutFrozenRedis(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	proxy, redisURL := proxied(t, testenv.RedisURL())
	opts, err := redis.ParseURL(redisURL)
	require.NoError(t, err)
	opts.ReadTimeout, opts.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })

	// Subscribe directly, not through the proxy.
	direct := testenv.Redis(t)
	sub := direct.Subscribe(ctx, "public.items.cdc_events")
	defer sub.Close()
	_, err = sub.Receive(ctx)
	require.NoError(t, err)
	// Other tests use tables called items too: keep only this database's
	// events, recognised by their values.
	tag := testenv.UniqueName("v")

	acts := newActivitySignal()
	r, err := relay.New(relay.Config{DatabaseURL: f.url, RetryInterval: 200 * time.Millisecond, Observer: acts.observe},
		redisSink(t, rdb))
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	defer func() { require.NoError(t, r.Close(context.Background())) }()

	proxy.Freeze()
	f.exec(t, `INSERT INTO items SELECT g, $1 FROM generate_series(1, 50) g`, tag)
	acts.wait(t, ctx, relay.ActivityHandlerFailed)
	proxy.Thaw()

	seen := map[string]bool{}
	for len(seen) < 50 {
		msg, err := sub.ReceiveMessage(ctx)
		require.NoError(t, err)
		if strings.Contains(msg.Payload, `"`+tag+`"`) {
			seen[msg.Payload] = true
		}
	}
}
