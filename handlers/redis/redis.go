// Package redis is pgrelay's Redis sink: a relay.EventHandler that publishes
// each event as one JSON object (see relay.Event.MarshalJSON) on its
// channel, "<schema>.<table>.cdc_events" by default, appends it to the
// stream of that name, or both (Config.Mode), on one Redis or a Redis
// Cluster.
//
// Pub/sub delivers to the subscribers connected at that moment only: the
// relay's at-least-once guarantee ends at PUBLISH. A stream keeps the
// events, and the handler appends each one exactly once, also when the
// relay is killed mid-batch or a standby takes over (stream.go).
package redis

import (
	"context"
	"fmt"
	"sync"

	"github.com/pgrelay/pgrelay/relay"
)

// Handler is the Redis sink. Create it with New. It is safe for concurrent
// use, also by relays of different names.
type Handler struct {
	relay.BaseHandler
	cfg Config
	// bufs holds the buffers batches are encoded into, reused once their
	// pipeline has been sent: growing a fresh one for every batch cost a
	// quarter of the relay's CPU while draining.
	bufs sync.Pool
	// streams is the stream mode's memory of what may be appended again.
	streams streamBook
}

// New returns a handler writing through cfg.Client.
func New(cfg Config) (*Handler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Handler{cfg: cfg.withDefaults()}, nil
}

// Config returns the handler's configuration, defaults filled in.
func (h *Handler) Config() Config { return h.cfg }

// OnConnect checks that Redis answers, so that an unreachable Redis shows up
// at start rather than at the first event, and loads the stream script (on
// every master of a cluster). A new session starts from the progress saved
// in PostgreSQL, so what was handed out since the last checkpoint stays
// recorded in Redis.
func (h *Handler) OnConnect(ctx context.Context) error {
	h.streams.restart()
	if err := h.cfg.Client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	if h.cfg.Mode != ModePubSub {
		if err := appendScript.Load(ctx, h.cfg.Client).Err(); err != nil {
			return fmt.Errorf("load the stream script into redis: %w", err)
		}
	}
	return nil
}

// OnStart checks that Redis answers before the relay starts.
func (h *Handler) OnStart(ctx context.Context) error { return h.OnConnect(ctx) }

// OnEvent writes one event.
func (h *Handler) OnEvent(ctx context.Context, e relay.Event) error {
	return h.OnEvents(ctx, []relay.Event{e})
}

// OnEvents writes events in one round trip (one per node on a cluster), in
// order: each channel's and each stream's events in the order given.
func (h *Handler) OnEvents(ctx context.Context, events []relay.Event) error {
	if h.cfg.Mode == ModePubSub {
		return h.publish(ctx, events)
	}
	return h.appendStreams(ctx, events)
}

// Checkpoint lets the stream mode forget the events delivered so far (see
// relay.CheckpointHandler).
func (h *Handler) Checkpoint(d relay.Delivery) { h.streams.checkpoint(d.Name) }

// OnClose sends what the stream mode may forget, so that the bookkeeping a
// stopped relay leaves in Redis is only what a successor needs.
func (h *Handler) OnClose(ctx context.Context) error {
	if h.cfg.Mode == ModePubSub {
		return nil
	}
	return h.forget(ctx)
}

// buffer returns a reusable encoding buffer; release it with done.
func (h *Handler) buffer() (buf []byte, done func([]byte)) {
	bp, _ := h.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	return (*bp)[:0], func(b []byte) {
		*bp = b
		h.bufs.Put(bp)
	}
}
