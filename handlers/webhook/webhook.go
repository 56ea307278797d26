// Package webhook is pgrelay's HTTP sink: a relay.BatchHandler that POSTs
// events as a JSON array (each element as relay.Event.MarshalJSON writes
// it), in order, at most Config.BatchSize per request, with
// "Content-Type: application/json".
//
// # Answers
//
// A 2xx answer means the events are delivered. 408, 429 and 5xx answers,
// timeouts, refused connections and other transport errors are retryable:
// OnEvents returns a plain error and the relay retries the same events with
// its own backoff (Config.RetryInterval), forever, so nothing is skipped.
// When such an answer carries Retry-After (seconds or an HTTP date), the
// handler first waits that long, capped at Config.MaxRetryWait and cut
// short when the relay stops, then returns the error; the relay's backoff
// comes on top. Other 4xx answers are permanent (relay.Permanent, with the
// status and the start of the body): the relay offers the events one by one
// to find the refused ones and parks those in cdc.failed_event after
// Config.MaxAttempts tries, as for any handler. Redirects and other
// statuses are retryable errors: the endpoint's configuration is wrong, and
// no event should be parked for it.
//
// # Signatures and duplicates
//
// With Config.Secret, "X-Pgrelay-Signature: sha256=<hex>" is the
// HMAC-SHA256 of the exact body bytes; receivers compute it over the raw
// body and compare with hmac.Equal.
//
// Delivery is at least once. A relay batch split into several POSTs is
// retried whole, so POSTs that had succeeded are sent again; after a
// restart a batch may be cut differently. Each request carries
// "X-Pgrelay-Delivery: <relay name>:<first event id>-<last event id>" (the
// same value in Idempotency-Key; without a relay, as in a direct call, the
// name part is empty), identical for a retry of the same POST, so a
// receiver can drop a repeated request cheaply. A receiver that must never
// apply an event twice should in the end remember event_id.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgrelay/pgrelay/relay"
)

// Handler is the webhook sink. Create it with New. It is safe for
// concurrent use, also by relays of different names.
type Handler struct {
	relay.BaseHandler
	cfg Config
	// redacted is cfg.URL as errors show it.
	redacted string
	// bufs holds the buffers request bodies are encoded into.
	bufs sync.Pool
}

// The relay checks for BatchHandler at run time; this makes the compiler
// check it.
var _ relay.BatchHandler = (*Handler)(nil)

// New returns a handler posting to cfg.URL.
func New(cfg Config) (*Handler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Handler{cfg: cfg.withDefaults(), redacted: relay.RedactURL(cfg.URL)}, nil
}

// Config returns the handler's configuration, defaults filled in.
func (h *Handler) Config() Config { return h.cfg }

// OnEvent posts one event as a one-element array. The relay calls it
// after OnEvents returned a permanent error, to find the refused event.
func (h *Handler) OnEvent(ctx context.Context, e relay.Event) error {
	return h.OnEvents(ctx, []relay.Event{e})
}

// OnEvents posts events in order, at most Config.BatchSize per request,
// one request at a time, and returns the first failure (see the package
// documentation for which are permanent).
func (h *Handler) OnEvents(ctx context.Context, events []relay.Event) error {
	name := ""
	if d, ok := relay.DeliveryOf(ctx); ok {
		name = d.Name
	}
	for len(events) > 0 {
		n := min(len(events), h.cfg.BatchSize)
		if err := h.post(ctx, name, events[:n]); err != nil {
			return err
		}
		events = events[n:]
	}
	return nil
}

// post sends one request holding events.
func (h *Handler) post(ctx context.Context, name string, events []relay.Event) error {
	buf, _ := h.bufs.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	defer h.bufs.Put(buf)
	body := append((*buf)[:0], '[')
	for i := range events {
		if i > 0 {
			body = append(body, ',')
		}
		body = events[i].AppendJSON(body)
	}
	body = append(body, ']')
	*buf = body

	rctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, h.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %s: %w", h.redacted, err)
	}
	for k, v := range h.cfg.Header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	if h.cfg.Secret != "" {
		req.Header.Set("X-Pgrelay-Signature", Sign(h.cfg.Secret, body))
	}
	key := name + ":" + strconv.FormatInt(events[0].ID, 10) + "-" + strconv.FormatInt(events[len(events)-1].ID, 10)
	req.Header.Set("X-Pgrelay-Delivery", key)
	req.Header.Set("Idempotency-Key", key)

	what := fmt.Sprintf("webhook %s: post %d events (%s)", h.redacted, len(events), key)
	resp, err := h.cfg.Client.Do(req)
	if err != nil {
		// *url.Error repeats the URL, query string included: keep only
		// its cause, next to the redacted URL.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	// Keep a little of the answer for the error message, and read the rest
	// (up to a limit) so that the connection can be reused.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	code := resp.StatusCode
	if code >= 200 && code <= 299 {
		return nil
	}
	err = &StatusError{Code: code, Status: resp.Status, Body: strings.Join(strings.Fields(string(snippet)), " ")}
	err = fmt.Errorf("%s: %w", what, err)
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		if wait, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			wait = min(wait, h.cfg.MaxRetryWait)
			t := time.NewTimer(wait)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
		}
		return err
	case code >= 400 && code <= 499:
		return relay.Permanent(err)
	default: // 1xx, 3xx: the endpoint is misconfigured; keep the events
		return err
	}
}

// StatusError is a non-2xx answer of the endpoint.
type StatusError struct {
	// Code and Status are the answer's status code and line.
	Code   int
	Status string
	// Body is the start of the answer's body, spaces collapsed.
	Body string
}

// Error returns the status and the body's start.
func (e *StatusError) Error() string {
	s := "endpoint answered " + e.Status
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// Sign returns the X-Pgrelay-Signature value of body under secret:
// "sha256=" and the hex HMAC-SHA256.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// retryAfter reads a Retry-After value, delay-seconds or an HTTP date,
// as a duration from now.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		if s > int64(24*time.Hour/time.Second) {
			s = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
