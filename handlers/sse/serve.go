package sse

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ServeHTTP serves GET /events (the stream) and GET / (the page).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(page)
	case "/events":
		h.serveEvents(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (h *Handler) authorized(r *http.Request) bool {
	if h.cfg.Token == "" {
		return true
	}
	got := r.URL.Query().Get("token")
	if a := r.Header.Get("Authorization"); a != "" {
		got, _ = strings.CutPrefix(a, "Bearer ")
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(h.cfg.Token)) == 1
}

// splitList splits repeated, comma-separated query values.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func (h *Handler) serveEvents(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pgrelay"`)
		http.Error(w, "unauthorized: send Authorization: Bearer <token> or ?token=", http.StatusUnauthorized)
		return
	}
	select {
	case <-h.started:
	default:
		http.Error(w, "the relay has not started yet", http.StatusServiceUnavailable)
		return
	}
	q := r.URL.Query()
	resume := int64(-1)
	raw := r.Header.Get("Last-Event-ID")
	if raw == "" {
		raw = q.Get("last_event_id")
	}
	if raw != "" {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "invalid Last-Event-ID "+strconv.Quote(raw)+": want a position (a non-negative integer)", http.StatusBadRequest)
			return
		}
		resume = n
	}
	c := &client{
		wake:    make(chan struct{}, 1),
		kicked:  make(chan struct{}),
		tables:  splitList(q["table"]),
		actions: splitList(q["action"]),
	}
	for i, t := range c.tables {
		if !strings.Contains(t, ".") {
			c.tables[i] = "public." + t
		}
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		http.Error(w, "the relay is stopping", http.StatusServiceUnavailable)
		return
	}
	c.catchingUp = resume >= 0
	h.clients[c] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.kickLocked(c)
		h.mu.Unlock()
	}()

	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout))
		_, err := w.Write(b)
		return err
	}
	flush := func() error {
		_ = rc.SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout))
		return rc.Flush()
	}
	if err := write([]byte(": pgrelay\n\n")); err != nil || flush() != nil {
		return
	}
	ctx := r.Context()
	last := resume
	if resume >= 0 {
		var err error
		if last, err = h.replay(ctx, c, resume, write, flush); err != nil {
			return
		}
	}
	hb := time.NewTicker(h.cfg.Heartbeat)
	defer hb.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kicked:
			return
		case <-hb.C:
			if write([]byte(": keepalive\n\n")) != nil || flush() != nil {
				return
			}
		case <-c.wake:
			for _, m := range h.take(c) {
				if m.position > last {
					if write(m.frame) != nil {
						return
					}
					last = m.position
				}
			}
			if flush() != nil {
				return
			}
		}
	}
}

// take returns c's pending messages, leaving none.
func (h *Handler) take(c *client) []*message {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := c.pending
	c.pending = nil
	return p
}

// errResume is a replay that was answered with an error event.
var errResume = errors.New("position not retained")

// replay sends the logged events after position from, then lets the client
// go live; it returns the last position sent.
func (h *Handler) replay(ctx context.Context, c *client, from int64, write func([]byte) error, flush func() error) (int64, error) {
	var pruned, top int64
	err := h.cfg.Pool.QueryRow(ctx, `SELECT coalesce((SELECT position FROM cdc.sse_pruned), 0),
	coalesce((SELECT max(position) FROM cdc.sse_log), 0)`).Scan(&pruned, &top)
	if err != nil {
		return 0, err
	}
	if from < pruned || from > max(top, pruned) {
		why := "is no longer retained (events are kept " + h.retentionText() + ")"
		if from > max(top, pruned) {
			why = "is not known to this relay"
		}
		msg := fmt.Sprintf(`{"error":"position %d %s","resume_from":%d}`, from, why, pruned)
		_ = write([]byte("event: error\ndata: " + msg + "\n\n"))
		_ = flush()
		return 0, errResume
	}
	last := from
	for {
		// Live messages already queued are in the log too (they are
		// logged before they are sent): drop them and read the log.
		h.take(c)
		rows, err := h.cfg.Pool.Query(ctx, `
SELECT position, schema_name, table_name, action, event FROM cdc.sse_log
WHERE position > $1
	AND ($2::text[] IS NULL OR schema_name || '.' || table_name = ANY ($2))
	AND ($3::text[] IS NULL OR action = ANY ($3))
ORDER BY position LIMIT $4`, last, c.tables, c.actions, pageSize)
		if err != nil {
			return 0, err
		}
		n := 0
		for rows.Next() {
			var pos int64
			var s, t, a, b string
			if err := rows.Scan(&pos, &s, &t, &a, &b); err != nil {
				rows.Close()
				return 0, err
			}
			n++
			if err := write(newMessage(pos, s, t, a, b).frame); err != nil {
				rows.Close()
				return 0, err
			}
			last = pos
		}
		if err := rows.Err(); err != nil {
			return 0, err
		}
		if err := flush(); err != nil {
			return 0, err
		}
		if n == pageSize {
			continue
		}
		h.mu.Lock()
		if c.missed {
			c.missed = false
			h.mu.Unlock()
			continue
		}
		c.catchingUp = false
		h.mu.Unlock()
		return last, nil
	}
}

func (h *Handler) retentionText() string {
	if h.cfg.Retention < 0 {
		return "forever"
	}
	return h.cfg.Retention.String()
}
