// Command webhook relays every captured change to an HTTP endpoint with the
// webhook sink (package handlers/webhook): each batch is POSTed as a JSON
// array of events, and the relay retries until the endpoint answers with a
// 2xx status.
//
//	go run ./examples/webhook -url http://127.0.0.1:8080/events
//
// With WEBHOOK_SECRET set in the environment, each request is signed
// (X-Pgrelay-Signature: sha256=<hex HMAC of the body>). The database comes
// from PG_DATABASE_URL or DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres) and must have the cdc schema
// installed, for example with `go run ./cmd/relay ensure-cdc users`. It runs
// until Ctrl-C or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pgrelay/pgrelay/handlers/webhook"
	"github.com/pgrelay/pgrelay/relay"
)

// defaultDatabaseURL is used when neither PG_DATABASE_URL nor DATABASE_URL is
// set; it matches the relay command's default.
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres"

func main() {
	endpoint := flag.String("url", "", "endpoint to POST each batch of events to (required)")
	timeout := flag.Duration("timeout", webhook.DefaultTimeout, "deadline of each POST, response included")
	batchSize := flag.Int("batch-size", webhook.DefaultBatchSize, "most events per POST")
	// A name of its own gives the webhook its own delivery position, so it
	// receives every event even while a Redis relay ("default") runs too.
	name := flag.String("name", "webhook", "relay name: its delivery position in cdc.relay_cursor")
	flag.Parse()

	if err := run(*endpoint, *name, *timeout, *batchSize); err != nil {
		// One line, whatever the error wraps, so that it reads well in logs.
		fmt.Fprintln(os.Stderr, "webhook: "+strings.Join(strings.Fields(err.Error()), " "))
		os.Exit(1)
	}
}

// run relays events to endpoint until a signal arrives.
func run(endpoint, name string, timeout time.Duration, batchSize int) error {
	if endpoint == "" {
		return errors.New("-url is required")
	}
	// The secret comes from the environment: on the command line it would
	// show in the process list.
	sink, err := webhook.New(webhook.Config{
		URL:       endpoint,
		Secret:    os.Getenv("WEBHOOK_SECRET"),
		Timeout:   timeout,
		BatchSize: batchSize,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	r, err := relay.New(relay.Config{
		DatabaseURL: databaseURL(),
		Name:        name,
		// Batches of one POST each: a failed POST then repeats no other.
		BatchSize: batchSize,
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}, sink)
	if err != nil {
		return err
	}
	// Run returns nil once the signal has stopped the relay. A POST still
	// in flight is abandoned; its batch is sent again on the next start.
	return r.Run(ctx)
}

// databaseURL returns the PostgreSQL URL from the environment, as the relay
// command reads it, or the local default.
func databaseURL() string {
	for _, env := range []string{"PG_DATABASE_URL", "DATABASE_URL"} {
		if u := os.Getenv(env); u != "" {
			return u
		}
	}
	return defaultDatabaseURL
}
