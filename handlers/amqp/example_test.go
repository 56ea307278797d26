package amqp_test

import (
	"context"
	"log"
	"log/slog"
	"os"
	"os/signal"

	amqpsink "github.com/pgrelay/pgrelay/handlers/amqp"
	"github.com/pgrelay/pgrelay/relay"
)

// Relay every captured change to the durable topic exchange "cdc" on a
// local RabbitMQ, until Ctrl-C. A queue bound to "cdc" with "public.users.*"
// gets the users table's inserts, updates and deletes; one bound with "#"
// gets everything. Messages carry message_id "<relay name>:<event_id>", by
// which consumers can drop the duplicates a retry may bring.
func ExampleNew() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	cfg, err := amqpsink.ConfigFromURL("amqp://guest:guest@127.0.0.1:5672/?exchange=cdc")
	if err != nil {
		log.Fatal(err)
	}
	sink, err := amqpsink.New(cfg)
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
