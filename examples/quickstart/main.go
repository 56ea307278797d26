// Command quickstart is pgrelay's whole path in one program: it creates a
// table, enables CDC on it, subscribes to its Redis channel, runs a relay
// in-process, changes a few rows and prints the events as they arrive
// through Redis. It then removes the table again.
//
//	go run ./examples/quickstart
//
// PostgreSQL comes from PG_DATABASE_URL or DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres) and Redis from REDIS_URL
// (default redis://127.0.0.1:6379/0). The cdc schema is installed in that
// database if it is missing; it is left in place afterwards.
//
// When a variable is unset and nothing listens at its default address, the
// quickstart starts a throw-away server instead, with scripts/throwaway.sh
// (as test.sh does: on a free port, its files in a temporary directory,
// installing the Debian package as root when it is missing), and removes it
// on exit. A server named in the environment must answer.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	redissink "github.com/pgrelay/pgrelay/handlers/redis"
	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/route"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// Defaults used when the environment names no servers; they match the relay
// command's.
const (
	defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres"
	defaultRedisURL    = "redis://127.0.0.1:6379/0"
)

// demoTable is created, captured and dropped by the demo. Its name is
// specific enough not to collide with an application's table.
var demoTable = sqlkit.Table{Schema: "public", Name: "quickstart_users"}

// waitFor bounds how long the demo waits for its events to come back.
const waitFor = 10 * time.Second

// change is one statement of the tour and the event it should produce.
type change struct {
	sql    string
	action relay.Action
	id     string // the primary key as it appears in the event's JSON
}

// tour is what the demo does to the table: each statement runs in its own
// transaction and produces exactly one event.
var tour = []change{
	{"INSERT INTO public.quickstart_users VALUES (1, 'Ada', 'ada@example.com')", relay.ActionInsert, "1"},
	{"INSERT INTO public.quickstart_users VALUES (2, 'Grace', 'grace@example.com')", relay.ActionInsert, "2"},
	{"UPDATE public.quickstart_users SET email = 'ada@lovelace.example' WHERE id = 1", relay.ActionUpdate, "1"},
	{"DELETE FROM public.quickstart_users WHERE id = 2", relay.ActionDelete, "2"},
}

func main() {
	if err := run(); err != nil {
		// One line, whatever the error wraps, so that it reads well.
		fmt.Fprintln(os.Stderr, "quickstart: "+strings.Join(strings.Fields(err.Error()), " "))
		os.Exit(1)
	}
}

// run performs the demo, undoing its changes on the way out whatever
// happens, Ctrl-C included.
func run() (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Cleanup must run even after Ctrl-C has cancelled ctx, but not hang.
	cleanupCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	}

	srv, err := chooseServers(ctx)
	if err != nil {
		return err
	}
	// Deferred first, so it runs last: the table is dropped and the relay
	// stopped while the servers still run.
	defer func() {
		if stopErr := srv.stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
	}()

	// PostgreSQL: create the demo table and capture it.
	dbURL := srv.databaseURL
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("database URL: %w", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	// A previous run that was killed may have left the table behind.
	if _, err := pool.Exec(ctx, "DROP TABLE IF EXISTS public.quickstart_users"); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, "CREATE TABLE public.quickstart_users (id bigint PRIMARY KEY, name text, email text)"); err != nil {
		return err
	}
	defer func() {
		// Dropping the table drops its capture triggers too, so
		// sqlkit.RemoveCDCFor is not needed.
		cctx, cancel := cleanupCtx()
		defer cancel()
		if _, dropErr := pool.Exec(cctx, "DROP TABLE IF EXISTS public.quickstart_users"); dropErr != nil {
			err = errors.Join(err, fmt.Errorf("drop demo table: %w", dropErr))
		}
	}()
	// Migrate installs (or upgrades) the cdc schema: the outbox and the
	// capture functions. It is idempotent.
	if err := sqlkit.Migrate(ctx, pool); err != nil {
		return err
	}
	if _, err := sqlkit.EnsureCDCFor(ctx, pool, demoTable); err != nil {
		return err
	}
	fmt.Printf("created %s and enabled CDC on it\n", demoTable)

	// Redis: subscribe before anything is written, because pub/sub only
	// delivers to the subscribers connected when a message is published.
	redisURL := srv.redisURL
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL %s: %w", relay.RedactURL(redisURL), err)
	}
	rdb := redis.NewClient(opts)
	// Deferred before the relay's Close, so it runs after it: the Redis
	// handler does not own the client, which must outlive the relay.
	defer rdb.Close()
	sub := rdb.Subscribe(ctx, route.Channel(demoTable.Schema, demoTable.Name))
	defer sub.Close()
	// Subscribe only sends the command; Receive waits for Redis to confirm
	// it, after which every message published is ours to receive.
	if _, err := sub.Receive(ctx); err != nil {
		return fmt.Errorf("subscribe to %s: %w", route.Channel(demoTable.Schema, demoTable.Name), err)
	}
	fmt.Printf("subscribed to Redis channel %s\n", route.Channel(demoTable.Schema, demoTable.Name))

	// The relay, in-process. It uses the default relay name, the one
	// `relay run` uses: if such a relay is already delivering from this
	// database, this one stands by and that one publishes the events.
	sink, err := redissink.New(redissink.Config{Client: rdb})
	if err != nil {
		return err
	}
	r, err := relay.New(relay.Config{
		DatabaseURL: dbURL,
		// Info shows "relay started" and, should another relay hold the
		// default name, that this one is standing by.
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}, sink)
	if err != nil {
		return err
	}
	if err := r.Start(ctx); err != nil {
		return err
	}
	defer func() {
		// Close lets a batch in flight finish: its events then count as
		// delivered.
		cctx, cancel := cleanupCtx()
		defer cancel()
		if closeErr := r.Close(cctx); closeErr != nil {
			err = errors.Join(err, fmt.Errorf("stop relay: %w", closeErr))
		}
	}()

	// Change some rows. Each statement commits on its own; the triggers
	// write the outbox in the same transaction, and the relay publishes.
	for _, c := range tour {
		if _, err := pool.Exec(ctx, c.sql); err != nil {
			return err
		}
		fmt.Println("  " + c.sql)
	}

	return receive(ctx, sub.Channel())
}

// receive prints the events arriving on msgs and checks them against the
// tour, until all have arrived or waitFor has passed.
func receive(ctx context.Context, msgs <-chan *redis.Message) error {
	ctx, cancel := context.WithTimeout(ctx, waitFor)
	defer cancel()
	for i := 0; i < len(tour); {
		var (
			m  *redis.Message
			ok bool
		)
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("received %d of %d events within %s; is another relay with the name %q delivering from this database without publishing to this Redis?",
					i, len(tour), waitFor, relay.DefaultName)
			}
			return ctx.Err()
		case m, ok = <-msgs:
			if !ok {
				return errors.New("the Redis subscription was closed")
			}
		}
		// The payload is relay.Event's JSON; decode what the demo shows.
		var e struct {
			Action relay.Action    `json:"action"`
			ID     json.RawMessage `json:"id"`
		}
		if err := json.Unmarshal([]byte(m.Payload), &e); err != nil {
			return fmt.Errorf("decode event %s: %w", m.Payload, err)
		}
		fmt.Printf("→ %s id=%s %s\n", e.Action, e.ID, m.Payload)
		if want := tour[i]; e.Action != want.action || string(e.ID) != want.id {
			return fmt.Errorf("expected %s id=%s, got %s id=%s", want.action, want.id, e.Action, e.ID)
		}
		i++
	}
	fmt.Printf("received all %d events\n", len(tour))
	return nil
}
