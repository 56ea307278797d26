// Command webhook POSTs every batch of captured changes to an HTTP endpoint
// as a JSON array, and lets the relay retry a batch until the endpoint
// answers with a 2xx status.
//
//	go run ./examples/webhook -url http://127.0.0.1:8080/events
//
// The database comes from PG_DATABASE_URL or DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres) and must have the cdc schema
// installed, for example with `go run ./cmd/relay ensure-cdc users`. It runs
// until Ctrl-C or SIGTERM.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgrelay/pgrelay/relay"
)

// defaultDatabaseURL is used when neither PG_DATABASE_URL nor DATABASE_URL is
// set; it matches the relay command's default.
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres"

func main() {
	endpoint := flag.String("url", "", "endpoint to POST each batch of events to (required)")
	timeout := flag.Duration("timeout", 10*time.Second, "deadline of each POST, response included")
	// Every event of a batch travels in one request body, so this bounds
	// the request size as well as the work repeated when a POST fails.
	batchSize := flag.Int("batch-size", 100, "most events per POST")
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
	if err := checkURL(endpoint); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	r, err := relay.New(relay.Config{
		DatabaseURL: databaseURL(),
		Name:        name,
		BatchSize:   batchSize,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}, newWebhook(endpoint, timeout))
	if err != nil {
		return err
	}
	// Run returns nil once the signal has stopped the relay. A POST still
	// in flight then gets Config.Timeout to finish; if it does not, its
	// batch is sent again on the next start.
	return r.Run(ctx)
}

// checkURL rejects a missing or non-HTTP endpoint up front, rather than as
// an error retried forever at the first event.
func checkURL(endpoint string) error {
	if endpoint == "" {
		return errors.New("-url is required")
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("invalid -url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid -url %q: want http:// or https:// and a host", u.Redacted())
	}
	return nil
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

// webhook is a relay.BatchHandler that POSTs each batch as a JSON array of
// events (see relay.Event.MarshalJSON for their format). Any failure,
// including a non-2xx answer, is returned to the relay, which retries the
// same batch with backoff: nothing is skipped, but the endpoint may see a
// batch more than once.
//
// Each request carries "Idempotency-Key: <first event id>-<last event id>".
// A retry of a failed POST sends the same key with the same body, so the
// endpoint can recognise it. After a relay restart the events are fetched
// anew and a batch may be cut differently, so an endpoint that must not
// apply an event twice should, in the end, remember event_id.
type webhook struct {
	relay.BaseHandler
	url    string
	client *http.Client
	buf    []byte // reused between batches
}

// The relay checks for BatchHandler at run time; this makes the compiler
// check that webhook still implements it.
var _ relay.BatchHandler = (*webhook)(nil)

// newWebhook returns a handler posting to endpoint, each request bounded by
// timeout.
func newWebhook(endpoint string, timeout time.Duration) *webhook {
	return &webhook{
		url: endpoint,
		client: &http.Client{
			// Without a timeout, an endpoint that never answers would
			// hold up delivery forever instead of being retried.
			Timeout: timeout,
			// Do not follow redirects: on 301, 302 and 303 the client
			// would resend the request as a GET without the body, and the
			// 2xx of that GET would count as delivered. A redirect is
			// reported as a non-2xx answer instead.
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
}

// OnEvent posts one event, as a one-element array. The relay calls OnEvents
// instead, since webhook is a BatchHandler; this keeps the type correct on
// its own.
func (h *webhook) OnEvent(ctx context.Context, e relay.Event) error {
	return h.OnEvents(ctx, []relay.Event{e})
}

// OnEvents posts events as one JSON array and succeeds only on a 2xx answer.
func (h *webhook) OnEvents(ctx context.Context, events []relay.Event) error {
	if len(events) == 0 {
		return nil
	}
	// AppendJSON writes each event without reflection, into a buffer
	// reused from batch to batch.
	body := append(h.buf[:0], '[')
	for i := range events {
		if i > 0 {
			body = append(body, ',')
		}
		body = events[i].AppendJSON(body)
	}
	body = append(body, ']')
	h.buf = body

	// ctx ends when the relay is closing or its connection failed: the
	// POST is then abandoned, and the batch sent again later.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", strconv.FormatInt(events[0].ID, 10)+"-"+strconv.FormatInt(events[len(events)-1].ID, 10))

	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("post %d events: %w", len(events), err)
	}
	defer resp.Body.Close()
	// Keep a little of the answer for the error message, and read the rest
	// (up to a limit) so that the connection can be reused.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		err := fmt.Errorf("post %d events: endpoint answered %s", len(events), resp.Status)
		if msg := strings.Join(strings.Fields(string(snippet)), " "); msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return err
	}
	return nil
}
