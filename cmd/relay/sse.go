package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/pgrelay/pgrelay/handlers/sse"
	"github.com/pgrelay/pgrelay/relay"
)

// sseFlags are run's flags for the Server-Sent Events sink.
func sseFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "sse-addr", Usage: "serve GET /events (text/event-stream) and a page at / on this address, e.g. 127.0.0.1:8080 (off when empty; a non-loopback address needs --sse-token)", EnvVars: []string{"RELAY_SSE_ADDR"}},
		&cli.StringFlag{Name: "sse-token", Usage: "require Authorization: Bearer <token> (or ?token=) of SSE clients", EnvVars: []string{"RELAY_SSE_TOKEN"}},
		&cli.DurationFlag{Name: "sse-retention", Usage: "how long SSE positions are kept in cdc.sse_log for clients resuming with Last-Event-ID (negative: forever)", EnvVars: []string{"RELAY_SSE_RETENTION"}, Value: sse.DefaultRetention},
	}
}

// sseSink builds the SSE sink of --sse-addr and serves it; stop ends the
// server and its pool. Without --sse-addr it returns a nil handler.
func sseSink(c *cli.Context) (h *sse.Handler, stop func(), err error) {
	addr := c.String("sse-addr")
	if addr == "" {
		for _, f := range []string{"sse-token", "sse-retention"} {
			if c.IsSet(f) {
				return nil, nil, fmt.Errorf("--%s needs --sse-addr", f)
			}
		}
		return nil, func() {}, nil
	}
	dbURL := c.String(flagDatabaseURL)
	poolCfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid --database-url: %w", err)
	}
	poolCfg.MaxConns = 4
	poolCfg.ConnConfig.RuntimeParams["application_name"] = "pgrelay sse"
	pool, err := pgxpool.NewWithConfig(c.Context, poolCfg)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", relay.RedactURL(dbURL), err)
	}
	h, err = sse.New(sse.Config{Pool: pool, Addr: addr, Token: c.String("sse-token"), Retention: c.Duration("sse-retention")})
	if err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("invalid --sse-addr or --sse-token: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("invalid --sse-addr: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return h, func() {
		// The relay's OnClose has ended the streams by now.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Context), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		pool.Close()
	}, nil
}
