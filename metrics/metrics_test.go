package metrics_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	redissink "github.com/pgrelay/pgrelay/handlers/redis"
	"github.com/pgrelay/pgrelay/internal/faultproxy"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/metrics"
	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// value returns the value of the metric name with exactly labels, 0 when
// there is none.
func value(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

// refuseKey refuses, permanently, the events whose key is "13".
type refuseKey struct{ relay.BaseHandler }

func (refuseKey) OnEvent(_ context.Context, e relay.Event) error {
	if string(e.Key) == "13" {
		return relay.Permanent(errors.New("13 is unlucky"))
	}
	return nil
}

// fixture is a migrated database with a captured table items.
func fixture(t *testing.T) (context.Context, string) {
	ctx := testenv.Context(t)
	dbURL := testenv.NewMigratedDatabase(t)
	pool := testenv.Pool(t, dbURL)
	_, err := pool.Exec(ctx, `CREATE TABLE items (id int PRIMARY KEY)`)
	require.NoError(t, err)
	_, err = sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "items"})
	require.NoError(t, err)
	return ctx, dbURL
}

func fastConfig(dbURL string, m *metrics.Metrics) relay.Config {
	return relay.Config{DatabaseURL: dbURL, WatchdogInterval: 200 * time.Millisecond, Timeout: time.Second,
		RetryInterval: 100 * time.Millisecond, MaxAttempts: 1, Observer: m.Observe,
		Logger: slog.New(slog.DiscardHandler)}
}

// TestMetricsAfterKnownWork delivers known events, parks one, forces a
// reconnect, and reads the metrics back.
func TestMetricsAfterKnownWork(t *testing.T) {
	t.Parallel()
	ctx, dbURL := fixture(t)
	pool := testenv.Pool(t, dbURL)
	reg := prometheus.NewRegistry()
	m := metrics.New(metrics.Config{Registry: reg})
	r, err := relay.New(fastConfig(dbURL, m), refuseKey{})
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	defer r.Close(context.Background()) //nolint:errcheck

	_, err = pool.Exec(ctx, `INSERT INTO items SELECT g FROM generate_series(1, 20) g`)
	require.NoError(t, err)
	delivered := func() float64 {
		return value(t, reg, "pgrelay_events_delivered_total", map[string]string{"schema": "public", "table": "items", "action": "insert"})
	}
	testenv.WaitFor(t, ctx, "20 events delivered", func() bool { return delivered() == 19 && value(t, reg, "pgrelay_events_parked_total", nil) == 1 })
	require.EqualValues(t, 1, value(t, reg, "pgrelay_leader", nil))
	require.EqualValues(t, 0, value(t, reg, "pgrelay_polling", nil))
	require.GreaterOrEqual(t, value(t, reg, "pgrelay_batches_total", nil), 1.0)
	require.EqualValues(t, 19, value(t, reg, "pgrelay_delivery_lag_seconds", nil), "one lag sample per event")

	// The relay's backends are ended: it reconnects and says why.
	_, err = pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name LIKE 'pgrelay %'`)
	require.NoError(t, err)
	testenv.WaitFor(t, ctx, "a reconnect", func() bool {
		return value(t, reg, "pgrelay_reconnects_total", map[string]string{"reason": "database"})+
			value(t, reg, "pgrelay_reconnects_total", map[string]string{"reason": "watchdog"}) >= 1 &&
			value(t, reg, "pgrelay_leader", nil) == 1
	})
	_, err = pool.Exec(ctx, `INSERT INTO items VALUES (100)`)
	require.NoError(t, err)
	testenv.WaitFor(t, ctx, "delivery after the reconnect", func() bool { return delivered() == 20 })
}

// TestBacklogGauges: RunBacklog reports what is undelivered.
func TestBacklogGauges(t *testing.T) {
	t.Parallel()
	ctx, dbURL := fixture(t)
	pool := testenv.Pool(t, dbURL)
	_, err := pool.Exec(ctx, `INSERT INTO items SELECT g FROM generate_series(1, 7) g;
		UPDATE cdc.outbox SET changed_at = now() - interval '1 minute'`)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	m := metrics.New(metrics.Config{Registry: reg})
	var seen atomic.Int64
	m.OnStatus(func(st relay.Status) { seen.Store(st.Pending) })
	bctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { m.RunBacklog(bctx, pool, 20*time.Millisecond); close(done) }()
	testenv.WaitFor(t, ctx, "the backlog gauge", func() bool { return value(t, reg, "pgrelay_backlog_events", nil) == 7 })
	require.GreaterOrEqual(t, value(t, reg, "pgrelay_oldest_pending_age_seconds", nil), 60.0)
	require.EqualValues(t, 7, seen.Load())
	cancel()
	<-done
}

// probe returns /readyz's status code and body.
func probe(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestReadyzFollowsDatabaseAndRedis: /readyz turns 503, with a reason,
// when the fault proxy cuts PostgreSQL or Redis off, and 200 again after.
func TestReadyzFollowsDatabaseAndRedis(t *testing.T) {
	t.Parallel()
	ctx, dbURL := fixture(t)
	pool := testenv.Pool(t, dbURL)
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	pgProxy, err := faultproxy.New(u.Host)
	require.NoError(t, err)
	defer pgProxy.Close()
	u.Host = pgProxy.Addr()
	ru, err := url.Parse(testenv.RedisURL())
	require.NoError(t, err)
	redisProxy, err := faultproxy.New(ru.Host)
	require.NoError(t, err)
	defer redisProxy.Close()
	rdb := goredis.NewClient(&goredis.Options{Addr: redisProxy.Addr(), ReadTimeout: 300 * time.Millisecond,
		WriteTimeout: 300 * time.Millisecond, DialTimeout: 300 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	sink, err := redissink.New(redissink.Config{Client: rdb})
	require.NoError(t, err)

	m := metrics.New(metrics.Config{})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	code, body := probe(t, srv, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "starting")

	r, err := relay.New(fastConfig(u.String(), m), sink)
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	defer r.Close(context.Background()) //nolint:errcheck
	ready := func() bool { code, _ := probe(t, srv, "/readyz"); return code == http.StatusOK }
	testenv.WaitFor(t, ctx, "ready", ready)
	code, _ = probe(t, srv, "/healthz")
	require.Equal(t, http.StatusOK, code)

	pgProxy.Freeze()
	testenv.WaitFor(t, ctx, "not ready without PostgreSQL", func() bool { return !ready() })
	_, body = probe(t, srv, "/readyz")
	require.Contains(t, body, "database unreachable")
	pgProxy.Thaw()
	testenv.WaitFor(t, ctx, "ready again", ready)

	redisProxy.Freeze()
	_, err = pool.Exec(ctx, `INSERT INTO items VALUES (1)`)
	require.NoError(t, err)
	testenv.WaitFor(t, ctx, "not ready without Redis", func() bool { return !ready() })
	_, body = probe(t, srv, "/readyz")
	require.Contains(t, body, "sink *redis.Handler failing")
	redisProxy.Thaw()
	testenv.WaitFor(t, ctx, "ready again", ready)

	require.NoError(t, r.Close(ctx))
	code, _ = probe(t, srv, "/healthz")
	require.Equal(t, http.StatusServiceUnavailable, code, "the relay stopped")
}

// TestDeliveredCountsByLabels: a batch's events are counted under their
// own table and action however they interleave, parked ones not at all,
// and every delivered event's lag is observed.
func TestDeliveredCountsByLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(metrics.Config{Registry: reg})
	now := time.Now()
	ev := func(id int64, table string, action relay.Action) relay.Event {
		e := relay.Event{ID: id, Schema: "public", Table: table, Action: action, Timestamp: now.Add(-time.Duration(id) * time.Millisecond)}
		if action == relay.ActionMessage {
			e.Schema, e.Table, e.CustomChannel = "", "", table
		}
		return e
	}
	events := []relay.Event{
		ev(1, "a", relay.ActionInsert), ev(2, "a", relay.ActionInsert), ev(3, "b", relay.ActionInsert),
		ev(4, "a", relay.ActionInsert), ev(5, "a", relay.ActionUpdate), ev(6, "a", relay.ActionUpdate),
		ev(7, "orders.shipped", relay.ActionMessage), ev(8, "orders.shipped", relay.ActionMessage),
		ev(9, "a", relay.ActionUpdate),
	}
	m.Observe(relay.Activity{Kind: relay.ActivityParked, Events: []relay.Event{events[5]}})
	m.Observe(relay.Activity{Kind: relay.ActivityBatch, Events: events, At: now})
	for _, tt := range []struct {
		schema, table, action string
		want                  float64
	}{
		{"public", "a", "insert", 3},
		{"public", "b", "insert", 1},
		{"public", "a", "update", 2}, // one of three parked
		{"", "orders.shipped", "message", 2},
	} {
		got := value(t, reg, "pgrelay_events_delivered_total", map[string]string{"schema": tt.schema, "table": tt.table, "action": tt.action})
		require.Equal(t, tt.want, got, "%s.%s %s", tt.schema, tt.table, tt.action)
	}
	require.Equal(t, float64(len(events)-1), value(t, reg, "pgrelay_delivery_lag_seconds", nil))
}
