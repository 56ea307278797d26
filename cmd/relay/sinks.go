package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/urfave/cli/v2"

	amqpsink "github.com/pgrelay/pgrelay/handlers/amqp"
	natssink "github.com/pgrelay/pgrelay/handlers/nats"
	"github.com/pgrelay/pgrelay/handlers/webhook"
	"github.com/pgrelay/pgrelay/relay"
)

// sinkFlags are run's flags for the sinks chosen with --sink.
func sinkFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "sink", Usage: "a sink by URL, repeatable: redis:// rediss:// (as --redis-url), nats://, amqp:// amqps://, http:// https:// (webhook); every sink gets every event", EnvVars: []string{"RELAY_SINKS"}},
		&cli.StringFlag{Name: "nats-stream", Usage: "JetStream stream of nats:// sinks, created if missing", EnvVars: []string{"RELAY_NATS_STREAM"}, Value: natssink.DefaultStream},
		&cli.StringFlag{Name: "amqp-exchange", Usage: "durable topic exchange of amqp:// sinks, declared if missing", EnvVars: []string{"RELAY_AMQP_EXCHANGE"}, Value: amqpsink.DefaultExchange},
		&cli.IntFlag{Name: "webhook-batch", Usage: "most events per webhook POST", EnvVars: []string{"RELAY_WEBHOOK_BATCH"}, Value: webhook.DefaultBatchSize},
		&cli.StringFlag{Name: "webhook-secret", Usage: "sign webhook bodies: X-Pgrelay-Signature: sha256=<HMAC>", EnvVars: []string{"RELAY_WEBHOOK_SECRET"}},
	}
}

// otherSinks builds the non-Redis sinks of --sink, and returns the Redis
// URLs among them for the Redis sink.
func otherSinks(c *cli.Context) (sinks []relay.EventHandler, redisURLs []string, err error) {
	for _, raw := range c.StringSlice("sink") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || u.Scheme == "" {
			return nil, nil, fmt.Errorf("invalid --sink %s: want a URL such as nats://127.0.0.1:4222", relay.RedactURL(raw))
		}
		if u.Scheme == "redis" || u.Scheme == "rediss" {
			redisURLs = append(redisURLs, raw)
			continue
		}
		h, err := sinkOf(c, u.Scheme, raw)
		if err != nil {
			return nil, nil, fmt.Errorf("invalid --sink %s: %w", relay.RedactURL(raw), err)
		}
		sinks = append(sinks, h)
	}
	return sinks, redisURLs, nil
}

// sinkOf builds the sink of URL raw, whose scheme is scheme, with the
// flags that apply to it: a flag given overrides the URL's parameter.
func sinkOf(c *cli.Context, scheme, raw string) (relay.EventHandler, error) {
	switch scheme {
	case "nats", "tls", "ws", "wss":
		cfg, err := natssink.ConfigFromURL(raw)
		if err != nil {
			return nil, err
		}
		if c.IsSet("nats-stream") {
			cfg.Stream = c.String("nats-stream")
		}
		return natssink.New(cfg)
	case "amqp", "amqps":
		cfg, err := amqpsink.ConfigFromURL(raw)
		if err != nil {
			return nil, err
		}
		if c.IsSet("amqp-exchange") {
			cfg.Exchange = c.String("amqp-exchange")
		}
		return amqpsink.New(cfg)
	case "http", "https":
		cfg, err := webhook.ConfigFromURL(raw)
		if err != nil {
			return nil, err
		}
		cfg.BatchSize, cfg.Secret = c.Int("webhook-batch"), c.String("webhook-secret")
		return webhook.New(cfg)
	}
	return nil, fmt.Errorf("unknown scheme %q (redis, rediss, nats, tls, ws, wss, amqp, amqps, http, https)", scheme)
}
