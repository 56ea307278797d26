// Package sse is pgrelay's Server-Sent Events sink: a relay.EventHandler
// that is also an http.Handler serving GET /events as text/event-stream,
// and a page at / to watch the events live.
//
// Every event is first written to a log table in PostgreSQL,
// cdc.sse_log, which gives it a position in delivery order: the id: of its
// SSE message. A batch the relay hands over again after a crash keeps the
// positions it got the first time (ON CONFLICT on the event id), so
// positions have no duplicate, and a client that reconnects with
// Last-Event-ID (header or ?last_event_id=) gets every event after it from
// the log, then the live ones, without gap or duplicate, also across relay
// restarts, for as long as Config.Retention keeps them (24h by default).
// An older position is answered with an "event: error" message naming the
// position to resume from, and the stream is closed.
package sse

import (
	"cmp"
	"context"
	_ "embed"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgrelay/pgrelay/relay"
)

//go:embed static/index.html
var page []byte

// pageSize is how many log rows a replay reads at once.
const pageSize = 500

// Handler is the SSE sink. Create it with New; serve it with net/http.
type Handler struct {
	relay.BaseHandler
	cfg Config

	started   chan struct{}
	startOnce sync.Once
	stopPrune context.CancelFunc
	pruned    chan struct{}

	mu      sync.Mutex
	clients map[*client]struct{}
	closed  bool
}

// message is one event ready to send.
type message struct {
	position int64
	// table is "<schema>.<table>", as clients' ?table= name it: made
	// once, not for every client a message is offered to.
	table  string
	action string
	frame  []byte
}

type client struct {
	// wake has a value when pending has messages; pending grows up to
	// Config.ClientBuffer, so an idle client costs no buffer.
	wake    chan struct{}
	pending []*message
	kicked  chan struct{}
	tables  []string
	actions []string
	// pending, catchingUp and missed are guarded by Handler.mu: while a client
	// replays the log, a full buffer only makes it read the log again.
	catchingUp bool
	missed     bool
}

// New returns a handler logging to cfg.Pool's database.
func New(cfg Config) (*Handler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Handler{cfg: cfg.withDefaults(), started: make(chan struct{}), clients: map[*client]struct{}{}}, nil
}

// Config returns the handler's configuration, defaults filled in.
func (h *Handler) Config() Config { return h.cfg }

const schemaSQL = `
CREATE TABLE IF NOT EXISTS cdc.sse_log (
	position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	event_id bigint NOT NULL UNIQUE,
	schema_name text NOT NULL,
	table_name text NOT NULL,
	action text NOT NULL,
	event text NOT NULL,
	added_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sse_log_added_at ON cdc.sse_log (added_at);
CREATE TABLE IF NOT EXISTS cdc.sse_pruned (
	one boolean PRIMARY KEY DEFAULT true CHECK (one),
	position bigint NOT NULL
);`

// OnStart creates the log tables if missing and starts pruning them.
func (h *Handler) OnStart(ctx context.Context) error {
	if _, err := h.cfg.Pool.Exec(ctx, schemaSQL); err != nil {
		return fmt.Errorf("sse handler: create cdc.sse_log: %w", err)
	}
	h.startOnce.Do(func() {
		pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		h.stopPrune, h.pruned = cancel, make(chan struct{})
		go h.pruneLoop(pctx)
		close(h.started)
	})
	return nil
}

func (h *Handler) pruneLoop(ctx context.Context) {
	defer close(h.pruned)
	if h.cfg.Retention < 0 {
		return
	}
	t := time.NewTicker(h.cfg.PruneInterval)
	defer t.Stop()
	for {
		_ = h.Prune(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Prune deletes the log rows older than Config.Retention, remembering the
// highest position deleted so that a client resuming before it is told.
// The handler calls it every Config.PruneInterval.
func (h *Handler) Prune(ctx context.Context) error {
	if h.cfg.Retention < 0 {
		return nil
	}
	_, err := h.cfg.Pool.Exec(ctx, `
WITH d AS (DELETE FROM cdc.sse_log WHERE added_at < now() - $1::interval RETURNING position)
INSERT INTO cdc.sse_pruned (position) SELECT max(position) FROM d HAVING count(*) > 0
ON CONFLICT (one) DO UPDATE SET position = greatest(cdc.sse_pruned.position, excluded.position)`,
		h.cfg.Retention)
	if err != nil {
		return fmt.Errorf("sse handler: prune cdc.sse_log: %w", err)
	}
	return nil
}

// OnEvent logs and sends one event.
func (h *Handler) OnEvent(ctx context.Context, e relay.Event) error {
	return h.OnEvents(ctx, []relay.Event{e})
}

// OnEvents writes the events to the log in the order given, in one
// statement, skipping those already there (a batch repeated after a crash),
// then sends the new ones to the connected clients. Events already logged
// take no position, so positions stay contiguous (with one relay writing).
func (h *Handler) OnEvents(ctx context.Context, events []relay.Event) error {
	if len(events) == 0 {
		return nil
	}
	ids := make([]int64, len(events))
	schemas := make([]string, len(events))
	tables := make([]string, len(events))
	actions := make([]string, len(events))
	bodies := make([]string, len(events))
	var buf []byte
	for i := range events {
		e := &events[i]
		ids[i], schemas[i], tables[i], actions[i] = e.ID, e.Schema, e.Table, string(e.Action)
		buf = e.AppendJSON(buf[:0])
		bodies[i] = string(buf)
	}
	rows, err := h.cfg.Pool.Query(ctx, `
INSERT INTO cdc.sse_log (event_id, schema_name, table_name, action, event)
SELECT id, s, t, a, b FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])
	WITH ORDINALITY AS u(id, s, t, a, b, n)
WHERE NOT EXISTS (SELECT FROM cdc.sse_log l WHERE l.event_id = u.id)
ORDER BY n
ON CONFLICT (event_id) DO NOTHING
RETURNING position, event_id`, ids, schemas, tables, actions, bodies)
	if err != nil {
		return fmt.Errorf("sse handler: insert into cdc.sse_log: %w", err)
	}
	index := make(map[int64]int, len(events))
	for i, id := range ids {
		index[id] = i
	}
	var msgs []*message
	for rows.Next() {
		var pos, id int64
		if err := rows.Scan(&pos, &id); err != nil {
			rows.Close()
			return fmt.Errorf("sse handler: insert into cdc.sse_log: %w", err)
		}
		i := index[id]
		msgs = append(msgs, newMessage(pos, schemas[i], tables[i], actions[i], bodies[i]))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sse handler: insert into cdc.sse_log: %w", err)
	}
	slices.SortFunc(msgs, func(a, b *message) int { return cmp.Compare(a.position, b.position) })
	h.fanOut(msgs)
	return nil
}

// OnClose stops pruning and ends every client's stream.
func (h *Handler) OnClose(context.Context) error {
	if h.stopPrune != nil {
		h.stopPrune()
		<-h.pruned
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for c := range h.clients {
		h.kickLocked(c)
	}
	return nil
}

// Clients returns how many clients are connected.
func (h *Handler) Clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

func newMessage(pos int64, schema, table, action, body string) *message {
	f := make([]byte, 0, len(body)+len(action)+40)
	f = append(f, "id: "...)
	f = strconv.AppendInt(f, pos, 10)
	f = append(f, "\nevent: "...)
	f = append(f, action...)
	f = append(f, '\n')
	for line := range strings.SplitSeq(body, "\n") {
		f = append(f, "data: "...)
		f = append(f, strings.TrimSuffix(line, "\r")...)
		f = append(f, '\n')
	}
	f = append(f, '\n')
	return &message{position: pos, table: schema + "." + table, action: action, frame: f}
}

func (c *client) wants(m *message) bool {
	if len(c.tables) > 0 && !slices.Contains(c.tables, m.table) {
		return false
	}
	return len(c.actions) == 0 || slices.Contains(c.actions, m.action)
}

func (h *Handler) fanOut(msgs []*message) {
	if len(msgs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		for _, m := range msgs {
			if !c.wants(m) {
				continue
			}
			if len(c.pending) < h.cfg.ClientBuffer {
				c.pending = append(c.pending, m)
				select {
				case c.wake <- struct{}{}:
				default:
				}
				continue
			}
			if c.catchingUp {
				c.missed = true
				continue
			}
			h.kickLocked(c)
			break
		}
	}
}

func (h *Handler) kickLocked(c *client) {
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		close(c.kicked)
	}
}
