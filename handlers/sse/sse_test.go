package sse_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/handlers/sse"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

const wait = 10 * time.Second

// newHandler starts a handler on pool and serves it; it is closed when the
// test ends.
func newHandler(t *testing.T, pool *pgxpool.Pool, cfg sse.Config) (*sse.Handler, *httptest.Server) {
	t.Helper()
	cfg.Pool = pool
	h, err := sse.New(cfg)
	require.NoError(t, err)
	require.NoError(t, h.OnStart(testenv.Context(t)))
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		require.NoError(t, h.OnClose(context.Background()))
		srv.Close()
	})
	return h, srv
}

func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	return testenv.Pool(t, testenv.NewMigratedDatabase(t))
}

// events returns n events with ids from first on, of table and action.
func events(first int64, n int, table string, action relay.Action) []relay.Event {
	schema, name, _ := strings.Cut(table, ".")
	out := make([]relay.Event, n)
	for i := range out {
		id := first + int64(i)
		out[i] = relay.Event{
			ID: id, Txid: uint64(id), Timestamp: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			Schema: schema, Table: name, Action: action,
			Key:  json.RawMessage(strconv.FormatInt(id, 10)),
			Data: json.RawMessage(fmt.Sprintf(`{"id":%d}`, id)),
		}
	}
	return out
}

type msg struct {
	id    int64
	event string
	data  string
}

// stream is a client of /events.
type stream struct {
	msgs chan msg
	body io.Closer
}

// connect opens /events with query and headers and waits for the stream's
// opening comment: from then on the client is subscribed.
func connect(t *testing.T, srv *httptest.Server, query string, header http.Header) *stream {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/events?"+query, nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	s := &stream{msgs: make(chan msg, 100000), body: resp.Body}
	t.Cleanup(func() { _ = resp.Body.Close() })
	r := bufio.NewReader(resp.Body)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, ": pgrelay\n", line)
	go func() {
		defer close(s.msgs)
		var m msg
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "":
				if m.event != "" {
					s.msgs <- m
				}
				m = msg{}
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "id: "):
				m.id, _ = strconv.ParseInt(line[4:], 10, 64)
			case strings.HasPrefix(line, "event: "):
				m.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				m.data += line[6:]
			}
		}
	}()
	return s
}

// take returns the next n messages.
func (s *stream) take(t *testing.T, n int) []msg {
	t.Helper()
	var out []msg
	timeout := time.After(wait)
	for len(out) < n {
		select {
		case m, ok := <-s.msgs:
			if !ok {
				require.FailNowf(t, "stream ended", "after %d of %d messages", len(out), n)
			}
			out = append(out, m)
		case <-timeout:
			require.FailNowf(t, "timeout", "got %d of %d messages", len(out), n)
		}
	}
	return out
}

// positions returns the positions (SSE ids) of ms, in order.
func positions(ms []msg) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.id
	}
	return out
}

func seq(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func TestMessagesCarryIDEventDataAndAreFiltered(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	h, srv := newHandler(t, newPool(t), sse.Config{})
	all := connect(t, srv, "", nil)
	users := connect(t, srv, "table=public.users&table=orders", nil)
	ins := connect(t, srv, "action=insert,update", nil)

	batch := append(events(100, 2, "public.users", relay.ActionInsert), events(50, 1, "public.items", relay.ActionDelete)...)
	batch = append(batch, events(10, 1, "public.orders", relay.ActionUpdate)...)
	batch = append(batch, relay.Event{ID: 7, Action: relay.ActionMessage, CustomChannel: "c1", Data: json.RawMessage(`{"x":1}`)})
	require.NoError(t, h.OnEvents(ctx, batch))

	got := all.take(t, 5)
	assert.Equal(t, seq(1, 5), positions(got), "positions follow delivery order, not event ids")
	assert.Equal(t, []string{"insert", "insert", "delete", "update", "message"},
		[]string{got[0].event, got[1].event, got[2].event, got[3].event, got[4].event})
	var e map[string]any
	require.NoError(t, json.Unmarshal([]byte(got[0].data), &e))
	assert.Equal(t, float64(100), e["event_id"])
	assert.Equal(t, "users", e["table"])
	b := batch[4]
	assert.Equal(t, string(b.AppendJSON(nil)), got[4].data)

	assert.Equal(t, []int64{1, 2, 4}, positions(users.take(t, 3)))
	assert.Equal(t, []int64{1, 2, 4}, positions(ins.take(t, 3)))
	// A marker both filters pass shows that nothing else was sent first.
	require.NoError(t, h.OnEvents(ctx, events(200, 1, "public.users", relay.ActionInsert)))
	assert.Equal(t, []int64{6}, positions(users.take(t, 1)))
	assert.Equal(t, []int64{6}, positions(ins.take(t, 1)))
}

func TestReplayAfterReconnectHasNoGapAndNoDuplicate(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	h, srv := newHandler(t, newPool(t), sse.Config{})
	s := connect(t, srv, "", nil)
	require.NoError(t, h.OnEvents(ctx, events(1, 10, "public.users", relay.ActionInsert)))
	first := s.take(t, 10)
	require.NoError(t, s.body.Close())
	last := first[len(first)-1].id

	// Events keep coming while the client is away and while it replays.
	done := make(chan error, 1)
	go func() {
		for i := range 20 {
			if err := h.OnEvents(ctx, events(int64(100+i*50), 50, "public.users", relay.ActionUpdate)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	require.NoError(t, h.OnEvents(ctx, events(50, 20, "public.users", relay.ActionInsert)))
	r := connect(t, srv, "", http.Header{"Last-Event-Id": {strconv.FormatInt(last, 10)}})
	require.NoError(t, <-done)
	assert.Equal(t, seq(11, 1030), positions(r.take(t, 1020)))

	// The same with ?last_event_id= and a filter.
	q := connect(t, srv, "last_event_id=1000&action=update", nil)
	assert.Equal(t, seq(1001, 1030), positions(q.take(t, 30)))
	require.NoError(t, h.OnEvents(ctx, events(5000, 1, "public.users", relay.ActionUpdate)))
	assert.Equal(t, []int64{1031}, positions(q.take(t, 1)))
	assert.Equal(t, []int64{1031}, positions(r.take(t, 1)))
}

func TestRestartContinuesPositionsAndReplays(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	pool := newPool(t)
	h1, err := sse.New(sse.Config{Pool: pool})
	require.NoError(t, err)
	require.NoError(t, h1.OnStart(ctx))
	require.NoError(t, h1.OnEvents(ctx, events(1, 5, "public.users", relay.ActionInsert)))
	require.NoError(t, h1.OnClose(ctx))

	// The relay restarts: a new handler on the same database, which gets
	// the last batch again (not yet saved as delivered) and then new ones.
	h2, srv := newHandler(t, pool, sse.Config{})
	require.NoError(t, h2.OnEvents(ctx, events(3, 5, "public.users", relay.ActionInsert)))
	s := connect(t, srv, "", http.Header{"Last-Event-ID": {"2"}})
	assert.Equal(t, seq(3, 7), positions(s.take(t, 5)))
	require.NoError(t, h2.OnEvents(ctx, events(8, 1, "public.users", relay.ActionInsert)))
	m := s.take(t, 1)[0]
	assert.Equal(t, int64(8), m.id)
	assert.Contains(t, m.data, `"event_id":8,`)
}

func TestRepeatedBatchAddsNothing(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	pool := newPool(t)
	h, srv := newHandler(t, pool, sse.Config{})
	s := connect(t, srv, "", nil)
	batch := events(1, 4, "public.users", relay.ActionInsert)
	require.NoError(t, h.OnEvents(ctx, batch))
	require.NoError(t, h.OnEvents(ctx, batch))
	require.NoError(t, h.OnEvents(ctx, events(10, 1, "public.users", relay.ActionDelete)))
	got := s.take(t, 5)
	assert.Equal(t, seq(1, 5), positions(got))
	assert.Equal(t, "delete", got[4].event)
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM cdc.sse_log`).Scan(&n))
	assert.Equal(t, 5, n)
}

func TestTokenIsRequired(t *testing.T) {
	t.Parallel()
	_, srv := newHandler(t, newPool(t), sse.Config{Token: "s3cret"})
	get := func(path string, header http.Header) int {
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		require.NoError(t, err)
		req.Header = header
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusUnauthorized, get("/events", http.Header{}))
	assert.Equal(t, http.StatusUnauthorized, get("/events", http.Header{"Authorization": {"Bearer nope"}}))
	assert.Equal(t, http.StatusUnauthorized, get("/events?token=nope", http.Header{}))
	connect(t, srv, "", http.Header{"Authorization": {"Bearer s3cret"}})
	connect(t, srv, "token="+url.QueryEscape("s3cret"), nil)
}

func TestNonLoopbackAddressNeedsToken(t *testing.T) {
	t.Parallel()
	pool := &pgxpool.Pool{}
	for _, addr := range []string{":8080", "0.0.0.0:8080", "192.168.1.2:80", "example.com:80", "[::]:80"} {
		_, err := sse.New(sse.Config{Pool: pool, Addr: addr})
		require.ErrorContains(t, err, "Config.Addr", addr)
		assert.ErrorContains(t, err, "Token", addr)
		_, err = sse.New(sse.Config{Pool: pool, Addr: addr, Token: "t"})
		assert.NoError(t, err, addr)
	}
	for _, addr := range []string{"127.0.0.1:8080", "localhost:8080", "[::1]:8080"} {
		_, err := sse.New(sse.Config{Pool: pool, Addr: addr})
		assert.NoError(t, err, addr)
	}
	_, err := sse.New(sse.Config{})
	assert.ErrorContains(t, err, "Config.Pool")
}

func TestSlowClientIsDisconnectedFastOneKeepsReceiving(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	h, srv := newHandler(t, newPool(t), sse.Config{ClientBuffer: 64, WriteTimeout: time.Second})
	fast := connect(t, srv, "", nil)
	// The slow client sends its request, reads the stream's opening (by
	// then it is registered) and never reads again.
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = fmt.Fprintf(conn, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	_, err = conn.Read(make([]byte, 512))
	require.NoError(t, err)
	require.Equal(t, 2, h.Clients())

	big := strings.Repeat("x", 16<<10)
	var pos int64
	for i := 0; h.Clients() == 2; i++ {
		require.Less(t, i, 500, "the slow client was never disconnected")
		batch := events(int64(i*32+1), 32, "public.users", relay.ActionInsert)
		for j := range batch {
			batch[j].Data = json.RawMessage(`{"pad":"` + big + `"}`)
		}
		require.NoError(t, h.OnEvents(ctx, batch))
		assert.Equal(t, seq(pos+1, pos+32), positions(fast.take(t, 32)))
		pos += 32
	}
	assert.Equal(t, 1, h.Clients())
	require.NoError(t, h.OnEvents(ctx, events(1<<20, 1, "public.users", relay.ActionInsert)))
	assert.Equal(t, []int64{pos + 1}, positions(fast.take(t, 1)))
	t.Logf("the slow client was disconnected after %d events", pos)
}

func TestExpiredPositionGetsErrorEvent(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	pool := newPool(t)
	h, srv := newHandler(t, pool, sse.Config{Retention: time.Hour})
	require.NoError(t, h.OnEvents(ctx, events(1, 5, "public.users", relay.ActionInsert)))
	_, err := pool.Exec(ctx, `UPDATE cdc.sse_log SET added_at = now() - interval '2 hours' WHERE position <= 3`)
	require.NoError(t, err)
	require.NoError(t, h.Prune(ctx))

	m := connect(t, srv, "", http.Header{"Last-Event-ID": {"1"}}).take(t, 1)[0]
	assert.Equal(t, "error", m.event)
	assert.Zero(t, m.id)
	assert.Contains(t, m.data, "position 1 is no longer retained (events are kept 1h0m0s)")
	assert.Contains(t, m.data, `"resume_from":3`)

	assert.Equal(t, []int64{4, 5}, positions(connect(t, srv, "", http.Header{"Last-Event-ID": {"3"}}).take(t, 2)))
	m = connect(t, srv, "last_event_id=99", nil).take(t, 1)[0]
	assert.Equal(t, "error", m.event)
	assert.Contains(t, m.data, "position 99 is not known")
}

func TestPageIsServed(t *testing.T) {
	t.Parallel()
	_, srv := newHandler(t, newPool(t), sse.Config{Token: "t"})
	resp, err := http.Get(srv.URL + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Contains(t, string(body), "new EventSource(")
	assert.NotContains(t, string(body), "http", "no CDN: the page loads nothing from elsewhere")
}

// TestMemoryOf1000IdleClients logs what 1,000 idle clients cost the
// process: heap and goroutine stacks, both sides of the connections (the
// clients are raw TCP connections, which cost little of their own).
func TestMemoryOf1000IdleClients(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	h, srv := newHandler(t, newPool(t), sse.Config{})
	measure := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
	before := measure()
	const n = 1000
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	buf := make([]byte, 512)
	for range n {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		require.NoError(t, err)
		conns = append(conns, c)
		_, err = fmt.Fprintf(c, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		_, err = c.Read(buf) // the headers and the opening comment
		require.NoError(t, err)
	}
	// A client is registered before its stream's first bytes are written.
	require.Equal(t, n, h.Clients())
	after := measure()
	mb := float64(after-before) / (1 << 20)
	t.Logf("%d idle SSE clients: %.1f MB (heap in use + stacks, server and client side)", n, mb)
	require.Less(t, mb, 50.0, "the issue's bound for 1,000 idle clients")
}
