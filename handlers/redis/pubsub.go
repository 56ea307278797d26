package redis

import (
	"context"
	"fmt"

	"github.com/pgrelay/pgrelay/relay"
)

// publish PUBLISHes (or SPUBLISHes) events in one pipeline.
func (h *Handler) publish(ctx context.Context, events []relay.Event) error {
	pipe := h.cfg.Client.Pipeline()
	buf, done := h.buffer()
	// A buffer that grows mid-batch moves on to a new array; the events
	// already queued keep pointing into the old one, which stays valid.
	for i := range events {
		e := &events[i]
		start := len(buf)
		buf = e.AppendJSON(buf)
		msg := buf[start:len(buf):len(buf)]
		if h.cfg.PubSub == PubSubSharded {
			pipe.SPublish(ctx, h.cfg.Channel(e), msg)
		} else {
			pipe.Publish(ctx, h.cfg.Channel(e), msg)
		}
	}
	_, err := pipe.Exec(ctx)
	done(buf)
	if err != nil {
		return fmt.Errorf("publish %d events to redis: %w", len(events), err)
	}
	return nil
}
