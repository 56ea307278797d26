package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"

	"github.com/pgrelay/pgrelay/handlers"
	redissink "github.com/pgrelay/pgrelay/handlers/redis"
	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/sqlkit"
)

func migrateCommand() *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "install or upgrade the cdc schema (safe to run any number of times)",
		Action: func(c *cli.Context) error {
			return withDB(c, func(ctx context.Context, conn *pgx.Conn) error {
				if err := sqlkit.Migrate(ctx, conn); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "cdc schema is at version %d\n", sqlkit.LatestVersion())
				return nil
			})
		},
	}
}

func ensureCDCCommand() *cli.Command {
	return &cli.Command{
		Name:      "ensure-cdc",
		Usage:     "capture changes of tables (migrates first if needed)",
		ArgsUsage: "[TABLE ...]  (table or schema.table; quote names as in SQL: '\"My Table\"')",
		Description: "Sets exactly the capture options given, each table's the same; an option left out " +
			"takes its default (everything is captured). Prints installed, updated or unchanged per table.",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "schema", Usage: "schemas for --all-tables (repeatable)", Value: cli.NewStringSlice("public")},
			&cli.BoolFlag{Name: "all-tables", Usage: "every table of the --schema schemas"},
			&cli.StringSliceFlag{Name: "actions", Usage: "capture only these of insert, update, delete, truncate (comma-separated)", DefaultText: "all"},
			&cli.StringSliceFlag{Name: "ignore-columns", Usage: "an UPDATE changing only these columns emits nothing; left out of changes, kept in data", DefaultText: "none"},
			&cli.StringSliceFlag{Name: "exclude-columns", Usage: "never write these columns to the outbox (not in data, changes or keys)", DefaultText: "none"},
			&cli.StringFlag{Name: "where", Usage: "row filter: an SQL condition on the table's columns, as PostgreSQL publication row filters", DefaultText: "none"},
		},
		Action: changeTables(tableChange{
			prepare: sqlkit.Migrate,
			all: func(ctx context.Context, c *cli.Context, db sqlkit.DB) ([]sqlkit.Table, error) {
				return sqlkit.AllTables(ctx, db, c.StringSlice("schema")...)
			},
			none: "no tables found",
			change: func(ctx context.Context, c *cli.Context, db sqlkit.DB, tables ...sqlkit.Table) ([]sqlkit.TableResult, error) {
				return sqlkit.EnsureCDCWith(ctx, db, captureOptions(c), tables...)
			},
		}),
	}
}

func removeCDCCommand() *cli.Command {
	return &cli.Command{
		Name:      "remove-cdc",
		Usage:     "stop capturing changes of tables (pending events are still delivered)",
		ArgsUsage: "[TABLE ...]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all-tables", Usage: "every table that has CDC"},
		},
		Action: changeTables(tableChange{
			prepare: func(context.Context, sqlkit.DB) error { return nil },
			all: func(ctx context.Context, _ *cli.Context, db sqlkit.DB) ([]sqlkit.Table, error) {
				return sqlkit.CDCTables(ctx, db)
			},
			none: "no tables have CDC",
			change: func(ctx context.Context, _ *cli.Context, db sqlkit.DB, tables ...sqlkit.Table) ([]sqlkit.TableResult, error) {
				return sqlkit.RemoveCDCFor(ctx, db, tables...)
			},
		}),
	}
}

// tableChange is what ensure-cdc and remove-cdc differ in.
type tableChange struct {
	prepare func(ctx context.Context, db sqlkit.DB) error
	// all lists the tables --all-tables means.
	all    func(ctx context.Context, c *cli.Context, db sqlkit.DB) ([]sqlkit.Table, error)
	none   string // printed when there is nothing to change
	change func(ctx context.Context, c *cli.Context, db sqlkit.DB, tables ...sqlkit.Table) ([]sqlkit.TableResult, error)
}

// captureOptions reads ensure-cdc's option flags; a flag not given is nil,
// the default.
func captureOptions(c *cli.Context) sqlkit.CaptureOptions {
	list := func(name string) []string {
		if !c.IsSet(name) {
			return nil
		}
		out := []string{}
		for _, v := range c.StringSlice(name) {
			if v = strings.TrimSpace(v); v != "" {
				out = append(out, v)
			}
		}
		return out
	}
	return sqlkit.CaptureOptions{
		Actions:        list("actions"),
		IgnoreColumns:  list("ignore-columns"),
		ExcludeColumns: list("exclude-columns"),
		Where:          c.String("where"),
	}
}

// changeTables is the action of ensure-cdc and remove-cdc: it changes the
// named tables (and with --all-tables the listed ones) in one transaction,
// printing a line per table.
func changeTables(tc tableChange) cli.ActionFunc {
	return func(c *cli.Context) error {
		tables, err := tableArgs(c)
		if err != nil {
			return err
		}
		return withDB(c, func(ctx context.Context, conn *pgx.Conn) error {
			if err := tc.prepare(ctx, conn); err != nil {
				return err
			}
			if c.Bool("all-tables") {
				all, err := tc.all(ctx, c, conn)
				if err != nil {
					return err
				}
				tables = append(tables, all...)
			}
			if len(tables) == 0 {
				fmt.Fprintln(c.App.Writer, tc.none)
				return nil
			}
			results, err := tc.change(ctx, c, conn, tables...)
			if err != nil {
				return err
			}
			for _, r := range results {
				fmt.Fprintf(c.App.Writer, "%s: %s\n", r.Table, r.Status)
			}
			return nil
		})
	}
}

// tableArgs parses the TABLE arguments; with none, --all-tables is required.
func tableArgs(c *cli.Context) ([]sqlkit.Table, error) {
	if c.NArg() == 0 && !c.Bool("all-tables") {
		return nil, fmt.Errorf("name at least one table, or use --all-tables (see %s --help)", c.Command.HelpName)
	}
	tables := make([]sqlkit.Table, 0, c.NArg())
	for _, arg := range c.Args().Slice() {
		t, err := sqlkit.ParseTable(arg)
		if err != nil {
			return nil, err
		}
		tables = append(tables, t)
	}
	return tables, nil
}

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "deliver captured changes until SIGINT or SIGTERM",
		Description: "Publishes each event to Redis when --redis-url is set (add --log-events to also log them), " +
			"and logs them otherwise.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: flagName, Usage: "delivery position name; relays sharing it take turns (one active, others on standby)", EnvVars: []string{"RELAY_NAME"}, Value: relay.DefaultName},
			&cli.BoolFlag{Name: "log-events", Usage: "log every event (always on without --redis-url)", EnvVars: []string{"RELAY_LOG_EVENTS"}},
			&cli.IntFlag{Name: "retry-attempts", Usage: "reconnection attempts before giving up; 0 retries forever", EnvVars: []string{"RELAY_RETRY_ATTEMPTS"}},
			&cli.DurationFlag{Name: "retry-interval", Usage: "wait before each reconnection, and between a standby's tries to take over", EnvVars: []string{"RELAY_RETRY_INTERVAL"}, Value: relay.DefaultRetryInterval},
			&cli.DurationFlag{Name: "watchdog-interval", Usage: "how often the connections are checked and the lease renewed", EnvVars: []string{"RELAY_WATCHDOG_INTERVAL"}, Value: relay.DefaultWatchdogInterval},
			&cli.DurationFlag{Name: "poll-interval", Usage: "read the outbox at least this often, even without notifications", EnvVars: []string{"RELAY_POLL_INTERVAL"}, Value: relay.DefaultPollInterval},
			&cli.DurationFlag{Name: "retention", Usage: "keep delivered events this long before deleting them (negative: forever)", EnvVars: []string{"RELAY_RETENTION"}, Value: relay.DefaultRetention},
			&cli.IntFlag{Name: "max-attempts", Usage: "tries of an event a handler refuses permanently before it is parked as failed", EnvVars: []string{"RELAY_MAX_ATTEMPTS"}, Value: relay.DefaultMaxAttempts},
			&cli.IntFlag{Name: "batch-size", Usage: "most events fetched and published at once", EnvVars: []string{"RELAY_BATCH_SIZE"}, Value: relay.DefaultBatchSize},
			&cli.StringFlag{Name: "redis-mode", Usage: "pubsub (PUBLISH to subscribers connected now), stream (XADD, exactly once, kept) or both", EnvVars: []string{"RELAY_REDIS_MODE"}, Value: string(redissink.ModePubSub)},
			&cli.Int64Flag{Name: "stream-maxlen", Usage: "keep at least this many entries per stream, trimming older ones (XADD MAXLEN ~); 0 never trims", EnvVars: []string{"RELAY_STREAM_MAXLEN"}, Value: redissink.DefaultStreamMaxLen},
			&cli.StringFlag{Name: "redis-pubsub", Usage: "publish command: sharded (SPUBLISH, the default on a cluster) or classic (PUBLISH, the default otherwise)", EnvVars: []string{"RELAY_REDIS_PUBSUB"}, Value: "auto", DefaultText: "auto"},
		},
		Action: runRelay,
	}
}

// redisSink builds the Redis handler from run's flags.
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

func runRelay(c *cli.Context) error {
	logger, err := newLogger(c)
	if err != nil {
		return err
	}
	var hs []relay.EventHandler
	rdb, err := redisClient(c)
	if err != nil {
		return err
	}
	if rdb == nil {
		for _, f := range []string{"redis-mode", "stream-maxlen", "redis-pubsub"} {
			if c.IsSet(f) {
				return fmt.Errorf("--%s needs --redis-url", f)
			}
		}
	} else {
		defer rdb.Close()
		sink, err := redisSink(c, rdb)
		if err != nil {
			return err
		}
		if err := rdb.Ping(c.Context).Err(); err != nil {
			return fmt.Errorf("connect to redis %s: %w", relay.RedactURL(c.String(flagRedisURL)), err)
		}
		hs = append(hs, sink)
	}
	if rdb == nil || c.Bool("log-events") {
		hs = append(hs, &handlers.Log{Logger: logger, Data: true})
	}
	r, err := relay.New(relay.Config{
		DatabaseURL:      c.String(flagDatabaseURL),
		Name:             c.String(flagName),
		BatchSize:        c.Int("batch-size"),
		RetryAttempts:    c.Int("retry-attempts"),
		RetryInterval:    c.Duration("retry-interval"),
		WatchdogInterval: c.Duration("watchdog-interval"),
		Timeout:          c.Duration(flagTimeout),
		PollInterval:     c.Duration("poll-interval"),
		Retention:        c.Duration("retention"),
		MaxAttempts:      c.Int("max-attempts"),
		Logger:           logger,
	}, hs...)
	if err != nil {
		return flagError(err)
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if rdb == nil {
		logger.Info("no --redis-url given: events are only logged")
	} else {
		cfg := hs[0].(*redissink.Handler).Config()
		logger.Info("delivering to redis", "redis", relay.RedactURL(c.String(flagRedisURL)),
			"cluster", c.Bool(flagRedisCluster), "mode", cfg.Mode, "pubsub", cfg.PubSub)
	}
	return r.Run(ctx)
}

// flagError names the command-line flag behind a Config validation error.
func flagError(err error) error {
	for field, flag := range map[string]string{
		"Config.DatabaseURL":      "--database-url",
		"Config.BatchSize":        "--batch-size",
		"Config.RetryInterval":    "--retry-interval",
		"Config.WatchdogInterval": "--watchdog-interval",
		"Config.Timeout":          "--timeout",
		"Config.PollInterval":     "--poll-interval",
		"Config.MaxAttempts":      "--max-attempts",
	} {
		if msg := err.Error(); len(msg) >= len(field) && msg[:len(field)] == field {
			return errors.New(flag + msg[len(field):])
		}
	}
	return err
}

func retryFailedCommand() *cli.Command {
	return &cli.Command{
		Name:  "retry-failed",
		Usage: "put the events a handler refused permanently back into the outbox",
		Description: "They are delivered again as new events (new event_id and txid, same timestamp), " +
			"to every relay name.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: flagName, Usage: "relay whose failed events to re-queue", EnvVars: []string{"RELAY_NAME"}, Value: relay.DefaultName},
		},
		Action: func(c *cli.Context) error {
			return withDB(c, func(ctx context.Context, conn *pgx.Conn) error {
				if err := sqlkit.CheckSchema(ctx, conn); err != nil {
					return err
				}
				n, err := sqlkit.RequeueFailed(ctx, conn, c.String(flagName))
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "re-queued %d failed events\n", n)
				return nil
			})
		},
	}
}
