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
	// Sized for the whole batch up front: a buffer that grows mid-batch
	// moves on to a new array (the events already queued keep pointing
	// into the old one, which stays valid), and growing by doubling
	// allocated twice the batch.
	if need := encodedSize(events); cap(buf) < need {
		buf = make([]byte, 0, need)
	}
	var (
		prev    *relay.Event
		channel string
	)
	for i := range events {
		e := &events[i]
		if prev == nil || !h.sameChannel(prev, e) {
			channel = h.cfg.Channel(e)
		}
		prev = e
		start := len(buf)
		buf = e.AppendJSON(buf)
		msg := buf[start:len(buf):len(buf)]
		if h.cfg.PubSub == PubSubSharded {
			pipe.SPublish(ctx, channel, msg)
		} else {
			pipe.Publish(ctx, channel, msg)
		}
	}
	_, err := pipe.Exec(ctx)
	done(buf)
	if err != nil {
		return fmt.Errorf("publish %d events to redis: %w", len(events), err)
	}
	return nil
}

// sameChannel reports whether b goes to a's channel, as far as that is known
// without naming it: with the default naming, a batch's events of one table
// (a statement's chunk, say) share the name instead of building it each.
func (h *Handler) sameChannel(a, b *relay.Event) bool {
	if !h.cfg.defaultChannel {
		return false
	}
	am, bm := a.Action == relay.ActionMessage, b.Action == relay.ActionMessage
	if am || bm {
		return am && bm && a.CustomChannel == b.CustomChannel
	}
	return a.Schema == b.Schema && a.Table == b.Table
}

// encodedSize bounds from above the JSON of events as AppendJSON writes it,
// but for strings that need escapes.
func encodedSize(events []relay.Event) int {
	n := 0
	for i := range events {
		e := &events[i]
		n += encodedFixed + len(e.Schema) + len(e.Table) + len(e.CustomChannel) +
			len(e.Key) + len(e.Data) + len(e.Changes)
	}
	return n
}

// encodedFixed is what AppendJSON writes around an event's variable parts,
// with room for the longest numbers and action.
const encodedFixed = 192
