package handlers

import (
	"context"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/pgrelay/pgrelay/relay"
)

// Redis is an EventHandler that PUBLISHes each event as one JSON object (see
// relay.Event.MarshalJSON) on its channel, by default
// "<schema>.<table>.cdc_events", so that
//
//	redis-cli SUBSCRIBE public.users.cdc_events
//
// receives the changes of public.users. A batch of events goes out in one
// pipeline. Redis pub/sub delivers to the subscribers connected at that
// moment only; the relay's at-least-once guarantee ends at PUBLISH.
//
// Create it with NewRedis. It is safe for concurrent use.
type Redis struct {
	relay.BaseHandler
	client  redis.UniversalClient
	channel func(*relay.Event) string
	// bufs holds the buffers batches are encoded into, reused once their
	// pipeline has been sent: growing a fresh one for every batch cost a
	// quarter of the relay's CPU while draining.
	bufs sync.Pool
}

// RedisOption configures a Redis handler.
type RedisOption func(*Redis)

// WithChannel routes events with fn instead of Event.Channel, for example to
// add a prefix or to send every table to one channel.
func WithChannel(fn func(*relay.Event) string) RedisOption {
	return func(h *Redis) { h.channel = fn }
}

// NewRedis returns a handler publishing through client. The caller keeps
// ownership of client and closes it after the relay has stopped.
func NewRedis(client redis.UniversalClient, opts ...RedisOption) *Redis {
	h := &Redis{client: client, channel: (*relay.Event).Channel}
	for _, o := range opts {
		o(h)
	}
	return h
}

// OnConnect checks that Redis answers, so that an unreachable Redis shows up
// at start rather than at the first event.
func (h *Redis) OnConnect(ctx context.Context) error {
	if err := h.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}

// OnStart is OnConnect: Redis must answer before the relay starts.
func (h *Redis) OnStart(ctx context.Context) error { return h.OnConnect(ctx) }

// OnEvent publishes one event.
func (h *Redis) OnEvent(ctx context.Context, e relay.Event) error {
	return h.OnEvents(ctx, []relay.Event{e})
}

// OnEvents publishes events in one pipeline, in order.
func (h *Redis) OnEvents(ctx context.Context, events []relay.Event) error {
	pipe := h.client.Pipeline()
	bp, _ := h.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	// A buffer that grows mid-batch moves on to a new array; the events
	// already queued keep pointing into the old one, which stays valid.
	buf := (*bp)[:0]
	for i := range events {
		e := &events[i]
		start := len(buf)
		buf = e.AppendJSON(buf)
		pipe.Publish(ctx, h.channel(e), buf[start:len(buf):len(buf)])
	}
	_, err := pipe.Exec(ctx)
	*bp = buf
	h.bufs.Put(bp)
	if err != nil {
		return fmt.Errorf("publish %d events to redis: %w", len(events), err)
	}
	return nil
}
