package redis_test

import (
	"context"
	"log"
	"log/slog"
	"os"
	"os/signal"

	goredis "github.com/redis/go-redis/v9"

	"github.com/pgrelay/pgrelay/handlers"
	redissink "github.com/pgrelay/pgrelay/handlers/redis"
	"github.com/pgrelay/pgrelay/relay"
)

// Relay every captured change into Redis streams (and pub/sub), and log it,
// until Ctrl-C.
func ExampleNew() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	rdb := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	sink, err := redissink.New(redissink.Config{Client: rdb, Mode: redissink.ModeBoth})
	if err != nil {
		log.Fatal(err)
	}

	r, err := relay.New(relay.Config{
		DatabaseURL: "postgres://postgres@127.0.0.1:5432/postgres",
		Logger:      slog.Default(),
	}, sink, &handlers.Log{})
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
