package handlers_test

import (
	"context"
	"log"
	"log/slog"
	"os"
	"os/signal"

	"github.com/pgrelay/pgrelay/handlers"
	"github.com/pgrelay/pgrelay/relay"
)

// Log every captured change, with its row, until Ctrl-C.
func ExampleLog() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	r, err := relay.New(relay.Config{
		DatabaseURL: "postgres://postgres@127.0.0.1:5432/postgres",
	}, &handlers.Log{Logger: slog.Default(), Data: true})
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
