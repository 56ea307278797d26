package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/handlers/webhook"
	"github.com/pgrelay/pgrelay/relay"
)

// request is what the test server saw of one POST.
type request struct {
	at     time.Time
	header http.Header
	body   []byte
}

// ids returns the event ids in the request's JSON array body.
func (r request) ids(t *testing.T) []int64 {
	t.Helper()
	var evs []struct {
		EventID int64 `json:"event_id"`
	}
	require.NoError(t, json.Unmarshal(r.body, &evs), "body %s", r.body)
	var out []int64
	for _, e := range evs {
		out = append(out, e.EventID)
	}
	return out
}

// recorder is a test endpoint: it records every request and answers with
// what answer returns (200 when nil).
type recorder struct {
	mu     sync.Mutex
	reqs   []request
	answer func(n int, r request, w http.ResponseWriter) // n counts from 0
}

func (s *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := request{at: time.Now(), header: r.Header.Clone(), body: body}
	s.mu.Lock()
	n := len(s.reqs)
	s.reqs = append(s.reqs, req)
	answer := s.answer
	s.mu.Unlock()
	if answer != nil {
		answer(n, req, w)
	}
}

func (s *recorder) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.reqs...)
}

// serve starts an endpoint for the test.
func serve(t *testing.T, answer func(n int, r request, w http.ResponseWriter)) (*recorder, *httptest.Server) {
	t.Helper()
	rec := &recorder{answer: answer}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	return rec, srv
}

func newHandler(t *testing.T, cfg webhook.Config) *webhook.Handler {
	t.Helper()
	h, err := webhook.New(cfg)
	require.NoError(t, err)
	return h
}

// events returns events with ids from..to.
func events(from, to int64) []relay.Event {
	var out []relay.Event
	for id := from; id <= to; id++ {
		out = append(out, relay.Event{ID: id, Txid: 7, Timestamp: time.Date(2026, 11, 22, 10, 1, 2, 0, time.UTC),
			Schema: "public", Table: "users", Action: relay.ActionInsert,
			Key: json.RawMessage(`1`), Data: json.RawMessage(`{"id": 1, "name": "a b"}`)})
	}
	return out
}

// TestBodiesSplitAtBatchSize: a relay batch becomes POSTs of at most
// BatchSize events, in order, each body the JSON array of the events'
// wire format, with the content type, a verifiable signature, the delivery
// key and the extra headers.
func TestBodiesSplitAtBatchSize(t *testing.T) {
	t.Parallel()
	rec, srv := serve(t, nil)
	const secret = "s3cret"
	h := newHandler(t, webhook.Config{URL: srv.URL + "/hook?token=x", BatchSize: 2, Secret: secret,
		Header: http.Header{"Authorization": {"Bearer abc"}, "Content-Type": {"text/plain"}}})
	evs := events(1, 5)
	ctx := relay.WithDelivery(context.Background(), relay.Delivery{Name: "wh", Token: 1})
	require.NoError(t, h.OnEvents(ctx, evs))

	reqs := rec.requests()
	require.Len(t, reqs, 3)
	wantIDs := [][]int64{{1, 2}, {3, 4}, {5}}
	wantKeys := []string{"wh:1-2", "wh:3-4", "wh:5-5"}
	for i, r := range reqs {
		require.Equal(t, wantIDs[i], r.ids(t))
		// The exact bytes: the events' own encoding, comma-separated.
		want := []byte{'['}
		for j := range evs[2*i : min(2*i+2, len(evs))] {
			if j > 0 {
				want = append(want, ',')
			}
			want = evs[2*i+j].AppendJSON(want)
		}
		want = append(want, ']')
		require.Equal(t, string(want), string(r.body))

		assert.Equal(t, "application/json", r.header.Get("Content-Type"))
		assert.Equal(t, "Bearer abc", r.header.Get("Authorization"))
		assert.Equal(t, wantKeys[i], r.header.Get("X-Pgrelay-Delivery"))
		assert.Equal(t, wantKeys[i], r.header.Get("Idempotency-Key"))

		sig, ok := strings.CutPrefix(r.header.Get("X-Pgrelay-Signature"), "sha256=")
		require.True(t, ok, "signature header %q", r.header.Get("X-Pgrelay-Signature"))
		got, err := hex.DecodeString(sig)
		require.NoError(t, err)
		m := hmac.New(sha256.New, []byte(secret))
		m.Write(r.body)
		require.True(t, hmac.Equal(m.Sum(nil), got), "signature verifies")
	}
}

// TestNoSignatureWithoutSecret: without a secret, no signature header.
func TestNoSignatureWithoutSecret(t *testing.T) {
	t.Parallel()
	rec, srv := serve(t, nil)
	h := newHandler(t, webhook.Config{URL: srv.URL})
	require.NoError(t, h.OnEvent(context.Background(), events(9, 9)[0]))
	reqs := rec.requests()
	require.Len(t, reqs, 1)
	require.Empty(t, reqs[0].header.Get("X-Pgrelay-Signature"))
	require.Equal(t, []int64{9}, reqs[0].ids(t))
	require.Equal(t, ":9-9", reqs[0].header.Get("X-Pgrelay-Delivery"), "no relay, no name")
}

// TestServerErrorIsRetried: a 500 is a plain (retryable) error; retried as
// the relay does, the events arrive, the POST that had succeeded once more
// (at least once), none lost.
func TestServerErrorIsRetried(t *testing.T) {
	t.Parallel()
	rec, srv := serve(t, func(n int, _ request, w http.ResponseWriter) {
		if n == 1 {
			http.Error(w, "database is down", http.StatusInternalServerError)
		}
	})
	h := newHandler(t, webhook.Config{URL: srv.URL, BatchSize: 2})
	err := h.OnEvents(context.Background(), events(1, 4))
	require.Error(t, err)
	var perm *relay.PermanentError
	require.False(t, errors.As(err, &perm), "a 500 is not permanent: %v", err)
	var st *webhook.StatusError
	require.ErrorAs(t, err, &st)
	require.Equal(t, 500, st.Code)
	require.Contains(t, err.Error(), "database is down")

	require.NoError(t, h.OnEvents(context.Background(), events(1, 4)))
	var got [][]int64
	for _, r := range rec.requests() {
		got = append(got, r.ids(t))
	}
	require.Equal(t, [][]int64{{1, 2}, {3, 4}, {1, 2}, {3, 4}}, got)
}

// TestRetryAfterIsHonoured: a 429 with Retry-After: 1 holds the retry back
// at least a second.
func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	rec, srv := serve(t, func(n int, _ request, w http.ResponseWriter) {
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	h := newHandler(t, webhook.Config{URL: srv.URL})
	for h.OnEvents(context.Background(), events(1, 1)) != nil {
	}
	reqs := rec.requests()
	require.Len(t, reqs, 2)
	require.GreaterOrEqual(t, reqs[1].at.Sub(reqs[0].at), time.Second)
}

// TestRetryAfterIsCappedAndCancellable: a huge Retry-After waits no longer
// than MaxRetryWait, and stops waiting once the context ends.
func TestRetryAfterIsCappedAndCancellable(t *testing.T) {
	t.Parallel()
	answered := make(chan struct{}, 4)
	_, srv := serve(t, func(_ int, _ request, w http.ResponseWriter) {
		w.Header().Set("Retry-After", "86400")
		w.WriteHeader(http.StatusServiceUnavailable)
		answered <- struct{}{}
	})
	// Capped: the call returns with the 503 long before a context that
	// would end it after a minute (the uncapped wait is a day).
	h := newHandler(t, webhook.Config{URL: srv.URL, MaxRetryWait: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var status *webhook.StatusError
	require.ErrorAs(t, h.OnEvents(ctx, events(1, 1)), &status)
	require.NoError(t, ctx.Err(), "returned after MaxRetryWait, not when the context ended")
	<-answered

	// Cancelled: only once the client has the answer, so that the handler
	// is waiting out the Retry-After when the context ends.
	received := make(chan struct{}, 1)
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		received <- struct{}{}
		return resp, err
	})}
	h = newHandler(t, webhook.Config{URL: srv.URL, Client: client})
	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.OnEvents(ctx, events(1, 1)) }()
	<-received
	cancel()
	require.ErrorAs(t, <-done, &status, "the 503, returned when the context ended")
}

// TestClientErrorIsPermanent: another 4xx is permanent, with the status and
// the start of the body.
func TestClientErrorIsPermanent(t *testing.T) {
	t.Parallel()
	_, srv := serve(t, func(_ int, _ request, w http.ResponseWriter) {
		http.Error(w, `{"error": "unknown field"}`, http.StatusBadRequest)
	})
	h := newHandler(t, webhook.Config{URL: srv.URL})
	err := h.OnEvents(context.Background(), events(1, 1))
	var perm *relay.PermanentError
	require.ErrorAs(t, err, &perm)
	require.Contains(t, err.Error(), "400 Bad Request")
	require.Contains(t, err.Error(), "unknown field")

	for _, code := range []int{http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusBadGateway, http.StatusFound} {
		_, srv := serve(t, func(_ int, _ request, w http.ResponseWriter) {
			w.Header().Set("Location", "/elsewhere")
			w.WriteHeader(code)
		})
		h := newHandler(t, webhook.Config{URL: srv.URL})
		err := h.OnEvents(context.Background(), events(1, 1))
		require.Error(t, err, "status %d", code)
		require.False(t, errors.As(err, &perm), "status %d is retryable: %v", code, err)
	}
}

// TestRefusedConnectionIsRetried: with nothing listening the error is
// retryable, names the URL without its password, and the events go through
// once a server listens there.
func TestRefusedConnectionIsRetried(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	h := newHandler(t, webhook.Config{URL: "http://user:hunter2@" + addr + "/hook", Secret: "topsecret"})
	err = h.OnEvents(context.Background(), events(1, 3))
	require.Error(t, err)
	var perm *relay.PermanentError
	require.False(t, errors.As(err, &perm), "refused is retryable: %v", err)
	require.NotContains(t, err.Error(), "hunter2")
	require.NotContains(t, err.Error(), "topsecret")
	require.Contains(t, err.Error(), addr)

	rec := &recorder{}
	srv := httptest.NewUnstartedServer(rec)
	ln, err = net.Listen("tcp", addr)
	require.NoError(t, err)
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	require.Eventually(t, func() bool { return h.OnEvents(context.Background(), events(1, 3)) == nil },
		10*time.Second, 10*time.Millisecond)
	reqs := rec.requests()
	require.Len(t, reqs, 1)
	require.Equal(t, []int64{1, 2, 3}, reqs[0].ids(t))
}

// TestTimeoutIsRetryable: an endpoint that does not answer within Timeout
// is a retryable error.
func TestTimeoutIsRetryable(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	_, srv := serve(t, func(_ int, _ request, w http.ResponseWriter) { <-release })
	t.Cleanup(func() { close(release) }) // before srv.Close, which waits for handlers
	h := newHandler(t, webhook.Config{URL: srv.URL, Timeout: 100 * time.Millisecond})
	err := h.OnEvents(context.Background(), events(1, 1))
	require.Error(t, err)
	var perm *relay.PermanentError
	require.False(t, errors.As(err, &perm), "a timeout is retryable: %v", err)
	var nerr net.Error
	require.True(t, errors.Is(err, context.DeadlineExceeded) || errors.As(err, &nerr) && nerr.Timeout(), "a timeout: %v", err)
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  webhook.Config
		err  string // "" when valid
	}{
		{"minimal", webhook.Config{URL: "https://example.com/hook"}, ""},
		{"http with query", webhook.Config{URL: "http://127.0.0.1:8080/e?token=x"}, ""},
		{"no URL", webhook.Config{}, "Config.URL is required"},
		{"other scheme", webhook.Config{URL: "ftp://example.com"}, "Config.URL"},
		{"no host", webhook.Config{URL: "http:///path"}, "Config.URL"},
		{"not a URL", webhook.Config{URL: "http://a b:pw@%zz"}, "Config.URL"},
		{"relative", webhook.Config{URL: "example.com/hook"}, "Config.URL"},
		{"negative batch", webhook.Config{URL: "https://e.com", BatchSize: -1}, "Config.BatchSize"},
		{"negative timeout", webhook.Config{URL: "https://e.com", Timeout: -time.Second}, "Config.Timeout"},
		{"negative retry wait", webhook.Config{URL: "https://e.com", MaxRetryWait: -1}, "Config.MaxRetryWait"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := webhook.New(tc.cfg)
			if tc.err == "" {
				require.NoError(t, err)
				require.NotNil(t, h)
				return
			}
			require.ErrorContains(t, err, tc.err)
		})
	}

	h := newHandler(t, webhook.Config{URL: "https://e.com"})
	cfg := h.Config()
	require.Equal(t, webhook.DefaultBatchSize, cfg.BatchSize)
	require.Equal(t, webhook.DefaultTimeout, cfg.Timeout)
	require.Equal(t, webhook.DefaultMaxRetryWait, cfg.MaxRetryWait)
	require.NotNil(t, cfg.Client)
	require.Equal(t, webhook.DefaultTimeout, cfg.Client.Timeout)

	_, err := webhook.New(webhook.Config{URL: "ftp://u:hunter2@e.com"})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2", "the password is not in the error")
}

func TestConfigFromURL(t *testing.T) {
	t.Parallel()
	cfg, err := webhook.ConfigFromURL("https://u:p@example.com/hook?token=abc&x=1")
	require.NoError(t, err)
	require.Equal(t, webhook.Config{URL: "https://u:p@example.com/hook?token=abc&x=1"}, cfg)
	_, err = webhook.ConfigFromURL("redis://127.0.0.1:6379")
	require.ErrorContains(t, err, "Config.URL")
}

// TestRetryAfterDate: Retry-After as an HTTP date holds the retry back
// until about then; a date past or garbage does not hold it back at all.
func TestRetryAfterDate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		value   func() string
		atLeast time.Duration
	}{
		// The date has whole seconds: 2s ahead is at least 1s ahead.
		{"future date", func() string { return time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat) }, time.Second},
		{"past date", func() string { return time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat) }, 0},
		{"garbage", func() string { return "soon" }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec, srv := serve(t, func(n int, _ request, w http.ResponseWriter) {
				if n == 0 {
					w.Header().Set("Retry-After", tc.value())
					w.WriteHeader(http.StatusServiceUnavailable)
				}
			})
			h := newHandler(t, webhook.Config{URL: srv.URL, MaxRetryWait: 5 * time.Second})
			require.Error(t, h.OnEvents(context.Background(), events(1, 1)))
			require.NoError(t, h.OnEvents(context.Background(), events(1, 1)))
			reqs := rec.requests()
			require.Len(t, reqs, 2)
			require.GreaterOrEqual(t, reqs[1].at.Sub(reqs[0].at), tc.atLeast)
		})
	}
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

// RoundTrip calls f.
func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
