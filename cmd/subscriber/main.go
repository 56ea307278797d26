// Command subscriber prints the events pgrelay publishes to Redis, for a look
// at what flows or for piping into jq. It reads pub/sub channels (the
// default) or, with --stream, Redis Streams, from one server or, with
// --cluster, a Redis Cluster.
//
//	subscriber                             # every table: pattern *.cdc_events
//	subscriber public.users                # one table: public.users.cdc_events
//	subscriber 'shop.*'                    # a pattern
//	subscriber --stream users --from 0     # a stream, from its first entry
//	subscriber --stream users --group audit          # through a consumer group
//	subscriber --cluster --redis-url 'redis://h1:7000?addr=h2:7001' users
//	subscriber --actions update,delete --count 10 users
//
// Names: a bare table means public.table, schema.table means
// <schema>.<table>.cdc_events and a name ending in .cdc_events is used as it
// is (route.Resolve); a name with *, ? or [ is a pattern (classic pub/sub
// only). Without names the CHANNEL environment variable (names separated by
// commas) is used, and without it every table, except with --stream and with
// sharded pub/sub, which need names.
//
// Output: one line per event. When stdout is not a terminal (or with
// --format json) the line is the event JSON exactly as published; on a
// terminal (or with --format pretty) a readable line: the action, coloured,
// schema.table[key], and for an update the changed fields (field: old →
// new), for an insert or delete a summary of the row. Colours appear only on
// a terminal, and not with NO_COLOR set. --actions keeps the events of the
// actions named; --count N exits (status 0) after N events printed.
//
// Streams: the relay appends each event to the stream named like its
// channel, the event JSON in the entry's "event" field (other fields are
// ignored). --from is where reading starts: $ (the default) for entries
// added from now on, 0 for the whole stream, or an entry ID to read the
// entries after it. With --group the stream is read through that consumer
// group, created (with the stream if missing) at --from when it does not
// exist; an existing group continues where it is. The consumer is --consumer,
// by default the host name: a subscriber restarted under the same name first
// prints its own entries left pending, then new ones. Each entry is
// acknowledged only after it was written to stdout, so nothing is lost, and
// nothing repeats, with one exception that cannot be avoided: a subscriber
// killed after writing an entry and before acknowledging it prints that
// entry again when it restarts. Stopped by SIGINT or SIGTERM it acknowledges
// what it printed first. Run several subscribers on one host in one group
// with a --consumer each.
//
// Cluster: --redis-url names any node, and more seed nodes follow as addr
// parameters (go-redis's redis.ParseClusterURL). Pub/sub is sharded
// (SSUBSCRIBE, what the relay SPUBLISHes on a cluster) unless --pubsub
// classic; each stream is read on its own node.
//
// Redis going away is retried until it is back, with one line on stderr when
// the connection is lost and one when it is back. A stream read resumes
// after the last entry printed; pub/sub subscribes again, and misses what
// was published meanwhile. Not reaching Redis at the start, and a mistake
// on the command line, are one line on stderr and exit status 1.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"

	"github.com/pgrelay/pgrelay/relay"
)

func main() {
	redis.SetLogger(quietRedisLogger{})
	if err := newApp(os.Stdout, os.Stderr).Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "subscriber: "+strings.Join(strings.Fields(err.Error()), " "))
		os.Exit(1)
	}
}

// quietRedisLogger drops go-redis's internal retry messages; failures reach
// the user as returned errors.
type quietRedisLogger struct{}

// Printf discards the message.
func (quietRedisLogger) Printf(context.Context, string, ...any) {}

// Help categories of the flags.
const (
	categoryStreams = "Streams (with --stream)"
	categoryPubSub  = "Pub/sub"
	categoryOutput  = "Output"
)

// newApp returns the command, writing events to stdout and everything else
// to stderr.
func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "subscriber",
		Usage:     "print pgrelay events from Redis pub/sub or streams, one line each",
		ArgsUsage: "[CHANNEL_OR_STREAM_OR_TABLE ...]",
		Description: "A bare table means public.table; schema.table means the\n" +
			"<schema>.<table>.cdc_events channel or stream; a name ending in .cdc_events is used\n" +
			"as is; a name with *, ? or [ is a pattern (classic pub/sub only). Without names the\n" +
			"CHANNEL environment variable (comma-separated) is used, and without it every table\n" +
			"(*.cdc_events; not with --stream or sharded pub/sub, which need names).\n\n" +
			"Output is the event JSON, one line each, when stdout is not a terminal, and a\n" +
			"readable line, coloured, on a terminal (NO_COLOR: without colours).\n\n" +
			"Redis going away is retried until it is back (one line on stderr each way); a\n" +
			"stream read resumes after the last entry printed. With --group each entry is\n" +
			"acknowledged once printed: a restarted subscriber prints its pending entries first,\n" +
			"then new ones, and only an entry printed just before a kill -9, not yet\n" +
			"acknowledged, prints again.\n\n" +
			"Examples:\n" +
			"   subscriber public.users                     pub/sub, one table\n" +
			"   subscriber 'shop.*' | jq .data              pub/sub, a pattern, into jq\n" +
			"   subscriber --stream --from 0 users          a stream, from its start\n" +
			"   subscriber --stream --group audit --consumer a1 users orders\n" +
			"                                               two streams through a consumer group\n" +
			"   subscriber --cluster --redis-url 'redis://h1:7000?addr=h2:7001&addr=h3:7002' users\n" +
			"                                               sharded pub/sub on a cluster\n" +
			"   subscriber --cluster --pubsub classic 'shop.*'\n" +
			"                                               classic pub/sub (what the relay PUBLISHes)\n" +
			"   subscriber --actions insert,update --count 5 --format pretty users",
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "redis-url", Usage: "Redis `URL` (redis:// or rediss://); with --cluster any node, more seeds as ?addr=host:port&addr=…",
				EnvVars: []string{"REDIS_URL"}, Value: "redis://127.0.0.1:6379/0"},
			&cli.BoolFlag{Name: "cluster", Usage: "Redis is a cluster", EnvVars: []string{"REDIS_CLUSTER"}},
			&cli.BoolFlag{Name: "stream", Usage: "read Redis Streams instead of pub/sub", Category: categoryStreams},
			&cli.StringFlag{Name: "from", Usage: "start after entry `ID`: $ (only entries added from now on), 0 (the whole stream) or an entry ID; " +
				"with --group, where a new group starts", Value: "$", Category: categoryStreams},
			&cli.StringFlag{Name: "group", Usage: "read through consumer group `NAME` (created if missing), acknowledging each entry once printed",
				Category: categoryStreams},
			&cli.StringFlag{Name: "consumer", Usage: "this subscriber's `NAME` in the group (default: the host name; one each for several on a host)",
				Category: categoryStreams},
			&cli.StringFlag{Name: "pubsub", Usage: "`KIND` of pub/sub: sharded (SSUBSCRIBE; the default with --cluster, where the relay SPUBLISHes) " +
				"or classic (SUBSCRIBE/PSUBSCRIBE; the default otherwise, and the one with patterns)", Category: categoryPubSub},
			&cli.IntFlag{Name: "count", Usage: "exit after printing `N` events (0: never)", Category: categoryOutput},
			&cli.StringSliceFlag{Name: "actions", Usage: "print only the events of these `ACTIONS`: insert, update, delete, truncate, message (comma-separated)",
				Category: categoryOutput},
			&cli.StringFlag{Name: "format", Usage: "`FORMAT` of the lines: json (the event JSON; the default when stdout is not a terminal) " +
				"or pretty (readable; coloured on a terminal only)", Category: categoryOutput},
			&cli.BoolFlag{Name: "help", Aliases: []string{"h"}, Usage: "show help"},
		},
		// The command's own --help flag: cli's shared HelpFlag is written
		// while each app parses its flags, a data race between apps run
		// at once (the tests run several). cli still acts on a flag named
		// help.
		HideHelp:        true,
		HideHelpCommand: true,
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return fmt.Errorf("%w (see subscriber --help)", err)
		},
		Action: run,
	}
}

// run is the command's action: it checks the command line, connects, and
// prints events until a signal, --count, or an error that retrying cannot
// help ends it.
func run(c *cli.Context) error {
	cfg, err := parseConfig(c)
	if err != nil {
		return err
	}
	conns := 1
	if cfg.stream {
		conns = len(cfg.names) + len(cfg.customs)
	}
	rdb, err := newClient(cfg, conns)
	if err != nil {
		return err
	}
	defer rdb.Close()

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// done ends the run when --count events have been printed.
	ctx, done := context.WithCancel(ctx)
	defer done()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("connect to redis %s: %w", relay.RedactURL(cfg.redisURL), err)
	}

	s := &session{
		rdb:    rdb,
		out:    newPrinter(cfg, c.App.Writer, c.App.ErrWriter, done),
		errOut: c.App.ErrWriter,
		health: &health{out: c.App.ErrWriter},
	}
	closed := s.closeWhenDone(ctx)
	if cfg.stream {
		err = runStreams(ctx, s, cfg, c.App.ErrWriter)
	} else {
		err = runPubSub(ctx, s, cfg, c.App.ErrWriter)
	}
	done()
	closed()
	return err
}
