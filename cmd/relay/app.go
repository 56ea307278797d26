package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"

	"github.com/pgrelay/pgrelay/internal/logging"
	"github.com/pgrelay/pgrelay/relay"
)

// Flag names shared between commands and helpers.
const (
	flagDatabaseURL  = "database-url"
	flagRedisURL     = "redis-url"
	flagRedisCluster = "redis-cluster"
	flagLogLevel     = "log-level"
	flagLogFormat    = "log-format"
	flagTimeout      = "timeout"
	flagName         = "name"
)

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:  "relay",
		Usage: "PostgreSQL change data capture, relayed to Redis",
		Description: "Capture triggers write every row change into the outbox table cdc.outbox; `relay run` " +
			"publishes each change as JSON on the Redis channel <schema>.<table>.cdc_events.\n\n" +
			"Quick start:\n" +
			"   relay ensure-cdc users      # install the schema and capture public.users\n" +
			"   relay run                   # deliver (to Redis when --redis-url is set)\n" +
			"   redis-cli SUBSCRIBE public.users.cdc_events",
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:    flagDatabaseURL,
				Usage:   "PostgreSQL connection URL",
				EnvVars: []string{"PG_DATABASE_URL", "DATABASE_URL"},
				Value:   "postgres://postgres@127.0.0.1:5432/postgres",
			},
			&cli.StringFlag{
				Name:    flagRedisURL,
				Usage:   "Redis URL (redis:// or rediss:// for TLS); without it `relay run` only logs events",
				EnvVars: []string{"REDIS_URL"},
			},
			&cli.BoolFlag{
				Name:    flagRedisCluster,
				Usage:   "--redis-url names a node of a Redis Cluster (more seeds: redis://h1:7000?addr=h2:7001&addr=h3:7002)",
				EnvVars: []string{"REDIS_CLUSTER"},
			},
			&cli.StringFlag{
				Name:    flagLogLevel,
				Usage:   "debug, info, warn or error",
				EnvVars: []string{"LOG_LEVEL"},
				Value:   "info",
			},
			&cli.StringFlag{
				Name:    flagLogFormat,
				Usage:   "text (coloured on a terminal) or json",
				EnvVars: []string{"LOG_FORMAT"},
				Value:   "text",
			},
			&cli.DurationFlag{
				Name:    flagTimeout,
				Usage:   "deadline of each database round trip, connecting included",
				EnvVars: []string{"RELAY_TIMEOUT"},
				Value:   relay.DefaultTimeout,
			},
		},
		Commands: []*cli.Command{
			migrateCommand(),
			ensureCDCCommand(),
			removeCDCCommand(),
			runCommand(),
			statusCommand(),
			retryFailedCommand(),
			versionCommand(),
		},
		Version:         version(),
		OnUsageError:    usageError,
		HideHelpCommand: true,
		// main prints errors and picks the exit status; urfave/cli would
		// exit from inside Run.
		ExitErrHandler: func(*cli.Context, error) {},
		Before: func(c *cli.Context) error {
			// Fail on a bad level or format before doing anything.
			_, err := newLogger(c)
			return err
		},
	}
	for _, cmd := range app.Commands {
		cmd.OnUsageError = usageError
	}
	return app
}

// usageError turns a flag parsing error into one line instead of the help
// text.
func usageError(c *cli.Context, err error, _ bool) error {
	return fmt.Errorf("%w (see %s --help)", err, c.Command.HelpName)
}

func newLogger(c *cli.Context) (*slog.Logger, error) {
	return logging.New(c.App.ErrWriter, c.String(flagLogLevel), c.String(flagLogFormat))
}

// connect opens one connection to the database named by --database-url.
func connect(c *cli.Context) (*pgx.Conn, error) {
	url := c.String(flagDatabaseURL)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("invalid --database-url: %w", err)
	}
	cfg.ConnectTimeout = c.Duration(flagTimeout)
	cfg.RuntimeParams["application_name"] = "pgrelay " + c.Command.Name
	conn, err := pgx.ConnectConfig(c.Context, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", relay.RedactURL(url), unwrapConnect(err))
	}
	return conn, nil
}

// unwrapConnect drops pgx's "failed to connect to `user=… database=…`"
// preamble, which repeats what the caller already says.
// With sslmode=prefer pgx tries twice and reports both failures, which are
// usually the same; say it once.
func unwrapConnect(err error) error {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) && ce.Unwrap() != nil {
		err = ce.Unwrap()
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) > 1 && len(slices.Compact(lines)) == 1 {
		return errors.New(lines[0])
	}
	return err
}

// redisClient returns a client for url (--redis-url or a redis:// --sink),
// a cluster client with --redis-cluster, or nil when url is empty.
func redisClient(c *cli.Context, url string) (redis.UniversalClient, error) {
	if url == "" {
		if c.Bool(flagRedisCluster) {
			return nil, errors.New("--redis-cluster needs --redis-url naming a node of the cluster")
		}
		return nil, nil
	}
	timeout := c.Duration(flagTimeout)
	if c.Bool(flagRedisCluster) {
		opts, err := redis.ParseClusterURL(url)
		if err != nil {
			return nil, fmt.Errorf("invalid --redis-url %s for a cluster (redis://host:port?addr=host2:port2): %w", relay.RedactURL(url), err)
		}
		opts.DialTimeout = dialTimeout(opts.DialTimeout, timeout)
		return redis.NewClusterClient(opts), nil
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("invalid --redis-url %s: %w", relay.RedactURL(url), err)
	}
	opts.DialTimeout = dialTimeout(opts.DialTimeout, timeout)
	return redis.NewClient(opts), nil
}

// dialTimeout bounds the URL's dial timeout by --timeout.
func dialTimeout(fromURL, timeout time.Duration) time.Duration {
	if fromURL == 0 || fromURL > timeout {
		return timeout
	}
	return fromURL
}

// withDB connects to --database-url and runs a one-shot command's database
// work f on the connection, bounded in time.
func withDB(c *cli.Context, f func(ctx context.Context, conn *pgx.Conn) error) error {
	conn, err := connect(c)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	ctx, cancel := context.WithTimeout(c.Context, 10*c.Duration(flagTimeout)+time.Second)
	defer cancel()
	return f(ctx, conn)
}

// quietRedisLogger drops go-redis's internal messages (its dial retries):
// the errors that matter reach the user as returned errors.
type quietRedisLogger struct{}

func (quietRedisLogger) Printf(context.Context, string, ...any) {}

// hoistGlobalFlags moves the global flags written after the command name in
// front of it, so that `relay run --log-level debug` means what it says:
// urfave/cli only reads an application's flags before the command. Every
// global flag takes a value, and no command has a flag of the same name. A
// "--" ends the flags; what follows it is left alone.
func hoistGlobalFlags(app *cli.App, args []string) []string {
	global := map[string]bool{}
	for _, f := range app.Flags {
		for _, n := range f.Names() {
			global[n] = true
		}
	}
	// name returns the flag name of arg ("--log-level=x" gives "log-level"),
	// and whether its value is in the same argument.
	name := func(arg string) (string, bool) {
		n := strings.TrimLeft(arg, "-")
		if i := strings.IndexByte(n, '='); i >= 0 {
			return n[:i], true
		}
		return n, false
	}
	cmd := -1
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return args
		}
		if !strings.HasPrefix(a, "-") {
			cmd = i
			break
		}
		if n, inline := name(a); global[n] && !inline {
			i++ // its value
		}
	}
	if cmd < 0 {
		return args
	}
	var moved, rest []string
	for i := cmd + 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		n, inline := name(a)
		if !strings.HasPrefix(a, "-") || !global[n] {
			rest = append(rest, a)
			continue
		}
		moved = append(moved, a)
		if !inline && i+1 < len(args) {
			i++
			moved = append(moved, args[i])
		}
	}
	// Just before the command, after the global flags already there, so
	// that a flag given twice keeps its last value.
	out := make([]string, 0, len(args))
	out = append(out, args[:cmd]...)
	out = append(out, moved...)
	out = append(out, args[cmd])
	if c := app.Command(args[cmd]); c != nil {
		rest = hoistCommandFlags(c, rest)
	}
	return append(out, rest...)
}

// hoistCommandFlags moves a command's flags written after its arguments in
// front of them, so that `relay ensure-cdc users --where "…"` works:
// urfave/cli stops reading flags at the first argument. A "--" ends the
// flags.
func hoistCommandFlags(c *cli.Command, args []string) []string {
	takesValue := map[string]bool{}
	known := map[string]bool{}
	for _, f := range c.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			known[n], takesValue[n] = true, !isBool
		}
	}
	var flags, positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i:]...)
			break
		}
		n := strings.TrimLeft(a, "-")
		inline := strings.Contains(n, "=")
		if j := strings.IndexByte(n, '='); j >= 0 {
			n = n[:j]
		}
		if !strings.HasPrefix(a, "-") || !known[n] {
			positional = append(positional, a)
			continue
		}
		flags = append(flags, a)
		if takesValue[n] && !inline && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	return append(flags, positional...)
}
