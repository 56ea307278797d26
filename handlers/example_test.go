package handlers_test

import (
	"context"
	"log"
	"log/slog"
	"os"
	"os/signal"

	"github.com/redis/go-redis/v9"

	"github.com/pgrelay/pgrelay/handlers"
	"github.com/pgrelay/pgrelay/relay"
)

// Relay every captured change to Redis and log it, until Ctrl-C.
func ExampleNewRedis() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()

	r, err := relay.New(relay.Config{
		DatabaseURL: "postgres://postgres@127.0.0.1:5432/postgres",
		Logger:      slog.Default(),
	}, handlers.NewRedis(rdb), &handlers.Log{})
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
