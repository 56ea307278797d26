package nats_test

import (
	"context"
	"log"
	"log/slog"
	"os"
	"os/signal"

	natssink "github.com/pgrelay/pgrelay/handlers/nats"
	"github.com/pgrelay/pgrelay/relay"
)

// Relay every captured change, and the custom events published on
// "orders.*" channels, into the JetStream stream PGRELAY, until Ctrl-C.
func ExampleNew() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	cfg, err := natssink.ConfigFromURL("nats://127.0.0.1:4222?stream=PGRELAY")
	if err != nil {
		log.Fatal(err)
	}
	cfg.Subjects = []string{"*.*.cdc_events", "orders.*"}
	sink, err := natssink.New(cfg)
	if err != nil {
		log.Fatal(err)
	}

	r, err := relay.New(relay.Config{
		DatabaseURL: "postgres://postgres@127.0.0.1:5432/postgres",
		Logger:      slog.Default(),
	}, sink)
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
