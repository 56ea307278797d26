package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"

	"github.com/pgrelay/pgrelay/handlers"
	redissink "github.com/pgrelay/pgrelay/handlers/redis"
	"github.com/pgrelay/pgrelay/metrics"
	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/sqlkit"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "deliver captured changes until SIGINT or SIGTERM",
		Description: "Publishes each event to Redis when --redis-url is set (add --log-events to also log them), " +
			"and logs them otherwise. With --drain, delivers what was committed before it started, then exits 0.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: flagName, Usage: "delivery position name; relays sharing it take turns (one active, others on standby)", EnvVars: []string{"RELAY_NAME"}, Value: relay.DefaultName},
			&cli.BoolFlag{Name: "log-events", Usage: "log every event (always on without --redis-url; at debug level too)", EnvVars: []string{"RELAY_LOG_EVENTS"}},
			&cli.DurationFlag{Name: "log-summary-interval", Usage: "log a summary (events/s, backlog, lag) this often; 0 turns it off", EnvVars: []string{"RELAY_LOG_SUMMARY_INTERVAL"}, Value: time.Minute},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve /metrics, /healthz and /readyz on this address, e.g. 127.0.0.1:9187 (off when empty)", EnvVars: []string{"RELAY_METRICS_ADDR"}},
			&cli.BoolFlag{Name: "drain", Usage: "deliver everything committed before the relay started, then exit 0", EnvVars: []string{"RELAY_DRAIN"}},
			&cli.IntFlag{Name: "retry-attempts", Usage: "reconnection attempts before giving up; 0 retries forever", EnvVars: []string{"RELAY_RETRY_ATTEMPTS"}},
			&cli.DurationFlag{Name: "retry-interval", Usage: "wait before each reconnection, and between a standby's tries to take over", EnvVars: []string{"RELAY_RETRY_INTERVAL"}, Value: relay.DefaultRetryInterval},
			&cli.DurationFlag{Name: "watchdog-interval", Usage: "how often the connections are checked, the lease renewed and the backlog metrics refreshed", EnvVars: []string{"RELAY_WATCHDOG_INTERVAL"}, Value: relay.DefaultWatchdogInterval},
			&cli.DurationFlag{Name: "poll-interval", Usage: "read the outbox at least this often, even without notifications", EnvVars: []string{"RELAY_POLL_INTERVAL"}, Value: relay.DefaultPollInterval},
			&cli.DurationFlag{Name: "retention", Usage: "keep delivered events this long before deleting them (negative: forever)", EnvVars: []string{"RELAY_RETENTION"}, Value: relay.DefaultRetention},
			&cli.IntFlag{Name: "max-attempts", Usage: "tries of an event a handler refuses permanently before it is parked as failed", EnvVars: []string{"RELAY_MAX_ATTEMPTS"}, Value: relay.DefaultMaxAttempts},
			&cli.IntFlag{Name: "batch-size", Usage: "most events fetched and published at once", EnvVars: []string{"RELAY_BATCH_SIZE"}, Value: relay.DefaultBatchSize},
			&cli.StringFlag{Name: "redis-mode", Usage: "pubsub (PUBLISH to subscribers connected now), stream (XADD, exactly once, kept) or both", EnvVars: []string{"RELAY_REDIS_MODE"}, Value: string(redissink.ModePubSub)},
			&cli.Int64Flag{Name: "stream-maxlen", Usage: "keep at least this many entries per stream, trimming older ones (XADD MAXLEN ~); 0 never trims", EnvVars: []string{"RELAY_STREAM_MAXLEN"}, Value: redissink.DefaultStreamMaxLen},
			&cli.StringFlag{Name: "redis-pubsub", Usage: "publish command: sharded (SPUBLISH, the default on a cluster) or classic (PUBLISH, the default otherwise)", EnvVars: []string{"RELAY_REDIS_PUBSUB"}, Value: "auto", DefaultText: "auto"},
		}, append(sinkFlags(), sseFlags()...)...),
		Action: runRelay,
	}
}

func redisSink(c *cli.Context, rdb redis.UniversalClient) (*redissink.Handler, error) {
	mode, err := redissink.ParseMode(c.String("redis-mode"))
	if err != nil {
		return nil, fmt.Errorf("invalid --redis-mode: %w", err)
	}
	pubsub, err := redissink.ParsePubSub(c.String("redis-pubsub"))
	if err != nil {
		return nil, fmt.Errorf("invalid --redis-pubsub: %w", err)
	}
	maxlen := c.Int64("stream-maxlen")
	switch {
	case maxlen < 0:
		return nil, fmt.Errorf("invalid --stream-maxlen %d: it must be 0 (never trim) or more", maxlen)
	case maxlen == 0:
		maxlen = -1 // the Config's "never"
	}
	return redissink.New(redissink.Config{Client: rdb, Mode: mode, PubSub: pubsub, StreamMaxLen: maxlen})
}

// sinks builds the handlers from run's flags: the Redis sink when
// --redis-url (or a redis:// --sink) is set, checked to answer, the other
// --sink sinks, and the event log.
func sinks(c *cli.Context, rdb redis.UniversalClient, redisURL string, others []relay.EventHandler, logger *slog.Logger) ([]relay.EventHandler, error) {
	var hs []relay.EventHandler
	if rdb == nil {
		for _, f := range []string{"redis-mode", "stream-maxlen", "redis-pubsub"} {
			if c.IsSet(f) {
				return nil, fmt.Errorf("--%s needs --redis-url", f)
			}
		}
	} else {
		sink, err := redisSink(c, rdb)
		if err != nil {
			return nil, err
		}
		if err := rdb.Ping(c.Context).Err(); err != nil {
			return nil, fmt.Errorf("connect to redis %s: %w", relay.RedactURL(redisURL), err)
		}
		hs = append(hs, sink)
	}
	hs = append(hs, others...)
	switch {
	case len(hs) == 0 || c.Bool("log-events"):
		// Without a sink the log is the sink: every event at info.
		return append(hs, &handlers.Log{Logger: logger, Data: true}), nil
	case logger.Enabled(c.Context, slog.LevelDebug):
		return append(hs, &handlers.Log{Logger: logger, Level: slog.LevelDebug, Data: true}), nil
	}
	return hs, nil
}

func runRelay(c *cli.Context) error {
	logger, err := newLogger(c)
	if err != nil {
		return err
	}
	if c.Duration("log-summary-interval") < 0 {
		return fmt.Errorf("invalid --log-summary-interval %s: it must not be negative", c.Duration("log-summary-interval"))
	}
	others, redisURLs, err := otherSinks(c)
	if err != nil {
		return err
	}
	// One Redis sink at most: --redis-url, or a redis:// --sink.
	redisURL := c.String(flagRedisURL)
	if len(redisURLs) > 1 || (len(redisURLs) == 1 && redisURL != "" && redisURL != redisURLs[0]) {
		return errors.New("one Redis sink at most: give its URL once, as --redis-url or as --sink")
	}
	if redisURL == "" && len(redisURLs) == 1 {
		redisURL = redisURLs[0]
	}
	rdb, err := redisClient(c, redisURL)
	if err != nil {
		return err
	}
	if rdb != nil {
		defer rdb.Close()
	}
	sseHandler, stopSSE, err := sseSink(c)
	if err != nil {
		return err
	}
	defer stopSSE()
	if sseHandler != nil {
		others = append(others, sseHandler)
	}
	hs, err := sinks(c, rdb, redisURL, others, logger)
	if err != nil {
		return err
	}
	name := c.String(flagName)
	m := metrics.New(metrics.Config{Name: name})
	sum := newSummary(logger, c.Duration("log-summary-interval"))
	m.OnStatus(sum.setStatus)
	cfg := relay.Config{
		DatabaseURL:      c.String(flagDatabaseURL),
		Name:             name,
		BatchSize:        c.Int("batch-size"),
		RetryAttempts:    c.Int("retry-attempts"),
		RetryInterval:    c.Duration("retry-interval"),
		WatchdogInterval: c.Duration("watchdog-interval"),
		Timeout:          c.Duration(flagTimeout),
		PollInterval:     c.Duration("poll-interval"),
		Retention:        c.Duration("retention"),
		MaxAttempts:      c.Int("max-attempts"),
		Logger:           logger,
		Observer: func(a relay.Activity) {
			m.Observe(a)
			sum.observe(a)
		},
	}
	r, err := relay.New(cfg, hs...)
	if err != nil {
		return flagError(err)
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A small pool of its own for the status figures (metrics, summary,
	// --drain), so that they never wait behind delivery.
	poolCfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("invalid --database-url: %w", err)
	}
	poolCfg.MaxConns = 2
	poolCfg.ConnConfig.RuntimeParams["application_name"] = "pgrelay status"
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", relay.RedactURL(cfg.DatabaseURL), err)
	}
	defer pool.Close()

	var srv *http.Server
	if addr := c.String("metrics-addr"); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("invalid --metrics-addr: %w", err)
		}
		srv = &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}

	runCtx, finish := context.WithCancel(ctx)
	defer finish()
	var wg sync.WaitGroup
	defer wg.Wait()
	bgCtx, stopBg := context.WithCancel(ctx)
	defer stopBg()
	// The backlog figures cost a few queries: every watchdog interval for
	// the metrics, else once per summary, else never.
	switch every := c.Duration("log-summary-interval"); {
	case c.String("metrics-addr") != "":
		wg.Go(func() { m.RunBacklog(bgCtx, pool, cfg.WatchdogInterval) })
	case every > 0:
		wg.Go(func() { m.RunBacklog(bgCtx, pool, every) })
	}
	wg.Go(func() { sum.run(bgCtx) })

	var drained drainState
	if c.Bool("drain") {
		if err := drained.start(ctx, pool); err != nil {
			return err
		}
		wg.Go(func() { drained.watch(bgCtx, pool, name, sum.batches, finish) })
	}

	logStart(c, logger, hs, cfg, redisURL)
	err = r.Run(runCtx)
	stopBg()
	if c.Bool("drain") {
		if err == nil && !drained.finished.Load() {
			return errors.New("stopped before everything committed before the start was delivered")
		}
		if err == nil {
			logger.Info("drained: everything committed before the start is delivered")
		}
	}
	return err
}

// logStart is the one info line at start: what runs, against what.
func logStart(c *cli.Context, logger *slog.Logger, hs []relay.EventHandler, cfg relay.Config, redisURL string) {
	attrs := []any{"version", version(), "database", relay.RedactURL(cfg.DatabaseURL), "name", cfg.Name,
		"takeover_bound", cfg.TakeoverBound()}
	var names []string
	for _, h := range hs {
		switch h := h.(type) {
		case *redissink.Handler:
			sc := h.Config()
			attrs = append(attrs, "redis", relay.RedactURL(redisURL), "cluster", c.Bool(flagRedisCluster), "mode", sc.Mode)
			if sc.Mode != redissink.ModeStream {
				attrs = append(attrs, "pubsub", sc.PubSub)
			}
			names = append(names, "redis")
		case *handlers.Log:
			if h.Level == slog.LevelInfo {
				names = append(names, "log")
			}
		default:
			names = append(names, fmt.Sprintf("%T", h))
		}
	}
	attrs = append(attrs, "sinks", strings.Join(names, ","))
	for _, raw := range c.StringSlice("sink") {
		if u, err := url.Parse(strings.TrimSpace(raw)); err == nil && u.Scheme != "redis" && u.Scheme != "rediss" {
			attrs = append(attrs, "sink", relay.RedactURL(raw))
		}
	}
	if addr := c.String("metrics-addr"); addr != "" {
		attrs = append(attrs, "metrics", "http://"+addr+"/metrics")
	}
	if addr := c.String("sse-addr"); addr != "" {
		attrs = append(attrs, "sse", "http://"+addr+"/events")
	}
	if c.Bool("drain") {
		attrs = append(attrs, "drain", true)
	}
	logger.Info("pgrelay started", attrs...)
}

// drainState is --drain's: what had committed at start, and whether it has
// all been delivered.
type drainState struct {
	snapshot string
	finished atomic.Bool
}

func (d *drainState) start(ctx context.Context, db sqlkit.DB) error {
	snap, err := sqlkit.SnapshotNow(ctx, db)
	if err != nil {
		return err
	}
	d.snapshot = snap
	return nil
}

// watch checks after every batch (and every second) whether everything
// committed at start is delivered, and then calls finish.
func (d *drainState) watch(ctx context.Context, db sqlkit.DB, name string, batches <-chan struct{}, finish func()) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		n, err := sqlkit.BacklogBefore(ctx, db, name, d.snapshot)
		if err == nil && n == 0 {
			d.finished.Store(true)
			finish()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-batches:
		case <-t.C:
		}
	}
}
