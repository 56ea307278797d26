package relay_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/pgrelay/pgrelay/relay"
)

// A handler can be a single function.
func ExampleHandlerFunc() {
	print := relay.HandlerFunc(func(ctx context.Context, e relay.Event) error {
		fmt.Printf("%s %s.%s id=%s\n", e.Action, e.Schema, e.Table, e.Key)
		return nil
	})
	r, err := relay.New(relay.Config{DatabaseURL: "postgres://postgres@127.0.0.1:5432/postgres"}, print)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := r.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// countingHandler embeds BaseHandler and implements only what it needs.
type countingHandler struct {
	relay.BaseHandler
	n int
}

func (h *countingHandler) OnEvent(ctx context.Context, e relay.Event) error {
	h.n++
	return nil
}

func (h *countingHandler) OnClose(ctx context.Context) error {
	fmt.Println("events seen:", h.n)
	return nil
}

// Start runs the relay in the background; Close stops it.
func ExampleRelay_Start() {
	h := &countingHandler{}
	r, err := relay.New(relay.Config{DatabaseURL: "postgres://postgres@127.0.0.1:5432/postgres"}, h)
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	// ... the application runs ...
	if err := r.Close(context.Background()); err != nil {
		log.Fatal(err)
	}
}

// How long delivery may pause when the active relay is frozen, partitioned
// or killed, with the defaults and with faster checks.
func ExampleConfig_TakeoverBound() {
	fmt.Println(relay.Config{}.TakeoverBound())
	fast := relay.Config{WatchdogInterval: time.Second, Timeout: time.Second, RetryInterval: 500 * time.Millisecond}
	fmt.Println(fast.TakeoverBound())
	// Output:
	// 20s
	// 3.5s
}

// Send only new users to one handler, and orders' changes and their custom
// events to another.
func ExampleOnly() {
	newUsers := relay.HandlerFunc(func(ctx context.Context, e relay.Event) error {
		fmt.Printf("welcome user %s\n", e.Key)
		return nil
	})
	orders := relay.HandlerFunc(func(ctx context.Context, e relay.Event) error {
		fmt.Printf("%s on %s\n", e.Action, e.Channel())
		return nil
	})
	r, err := relay.New(relay.Config{DatabaseURL: "postgres://postgres@127.0.0.1:5432/postgres"},
		relay.Only(newUsers, relay.Tables("public.users"), relay.Actions(relay.ActionInsert)),
		relay.Only(orders, relay.Channels("public.orders.cdc_events", "orders.shipped")),
	)
	if err != nil {
		log.Fatal(err)
	}
	_ = r // r.Run(ctx) delivers until ctx ends
}
