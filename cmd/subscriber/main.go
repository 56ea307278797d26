// Command subscriber prints the events pgrelay publishes to Redis, one JSON
// object per line, for a look at what flows or for piping into jq.
//
//	subscriber                     # every table: pattern *.cdc_events
//	subscriber public.users        # one table: public.users.cdc_events
//	subscriber 'shop.*'            # a pattern
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

const channelSuffix = ".cdc_events"

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

func (quietRedisLogger) Printf(context.Context, string, ...any) {}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "subscriber",
		Usage:     "print pgrelay events from Redis, one JSON line each",
		ArgsUsage: "[CHANNEL_OR_TABLE ...]",
		Description: "A bare schema.table (or table, meaning public.table) subscribes to its " +
			"<schema>.<table>.cdc_events channel; a name ending in .cdc_events is used as is; " +
			"a name with *, ? or [ is a pattern. Without arguments, the CHANNEL environment " +
			"variable is used, and without it every table (*.cdc_events).",
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "redis-url", Usage: "Redis URL (redis:// or rediss://)", EnvVars: []string{"REDIS_URL"}, Value: "redis://127.0.0.1:6379/0"},
		},
		HideHelpCommand: true,
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return fmt.Errorf("%w (see subscriber --help)", err)
		},
		Action: subscribe,
	}
}

// channels sorts the arguments into channels and patterns.
func channels(args []string) (chans, patterns []string) {
	if len(args) == 0 {
		if env := os.Getenv("CHANNEL"); env != "" {
			args = strings.Split(env, ",")
		}
	}
	if len(args) == 0 {
		return nil, []string{"*" + channelSuffix}
	}
	for _, a := range args {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if !strings.HasSuffix(a, channelSuffix) {
			if !strings.Contains(a, ".") {
				a = "public." + a
			}
			a += channelSuffix
		}
		if strings.ContainsAny(a, "*?[") {
			patterns = append(patterns, a)
		} else {
			chans = append(chans, a)
		}
	}
	return chans, patterns
}

func subscribe(c *cli.Context) error {
	opts, err := redis.ParseURL(c.String("redis-url"))
	if err != nil {
		return fmt.Errorf("invalid --redis-url %s: %w", relay.RedactURL(c.String("redis-url")), err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("connect to redis %s: %w", relay.RedactURL(c.String("redis-url")), err)
	}

	chans, patterns := channels(c.Args().Slice())
	sub := rdb.Subscribe(ctx)
	defer sub.Close()
	if len(chans) > 0 {
		if err := sub.Subscribe(ctx, chans...); err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
	}
	if len(patterns) > 0 {
		if err := sub.PSubscribe(ctx, patterns...); err != nil {
			return fmt.Errorf("psubscribe: %w", err)
		}
	}
	// Wait for Redis to confirm each subscription, so that "subscribed"
	// means messages published from now on are received.
	for range len(chans) + len(patterns) {
		if _, err := sub.Receive(ctx); err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
	}
	fmt.Fprintf(c.App.ErrWriter, "subscribed to %s\n", strings.Join(append(chans, patterns...), ", "))
	msgs := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-msgs:
			if !ok {
				return nil
			}
			if _, err := io.WriteString(c.App.Writer, m.Payload+"\n"); err != nil {
				return err
			}
		}
	}
}
