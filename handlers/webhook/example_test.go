package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"time"

	"github.com/pgrelay/pgrelay/handlers/webhook"
	"github.com/pgrelay/pgrelay/relay"
)

// Relay every captured change to an HTTP endpoint, signed, until Ctrl-C.
func ExampleNew() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	sink, err := webhook.New(webhook.Config{
		URL:    "https://hooks.example.com/pgrelay",
		Secret: os.Getenv("WEBHOOK_SECRET"),
	})
	if err != nil {
		log.Fatal(err)
	}
	r, err := relay.New(relay.Config{
		DatabaseURL: "postgres://postgres@127.0.0.1:5432/postgres",
		Name:        "webhook", // a delivery position of its own
		Logger:      slog.Default(),
	}, sink)
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// What an endpoint receives, and how it checks the signature.
func ExampleHandler_OnEvents() {
	const secret = "s3cret"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		// Compare with hmac.Equal in real code.
		fmt.Println("signed:", r.Header.Get("X-Pgrelay-Signature") == webhook.Sign(secret, body))
		fmt.Println("delivery:", r.Header.Get("X-Pgrelay-Delivery"))
		fmt.Println(string(body))
	}))
	defer srv.Close()

	sink, err := webhook.New(webhook.Config{URL: srv.URL, Secret: secret})
	if err != nil {
		log.Fatal(err)
	}
	ctx := relay.WithDelivery(context.Background(), relay.Delivery{Name: "webhook"})
	err = sink.OnEvents(ctx, []relay.Event{{
		ID: 42, Txid: 7781, Timestamp: time.Date(2026, 11, 22, 10, 1, 2, 123456000, time.UTC),
		Schema: "public", Table: "users", Action: relay.ActionInsert,
		Key: json.RawMessage(`7`), Data: json.RawMessage(`{"id": 7, "name": "a"}`),
	}})
	fmt.Println("err:", err)
	// Output:
	// signed: true
	// delivery: webhook:42-42
	// [{"event_id":42,"txid":7781,"timestamp":"2026-11-22T10:01:02.123456Z","schema":"public","table":"users","action":"insert","id":7,"data":{"id":7,"name":"a"}}]
	// err: <nil>
}
