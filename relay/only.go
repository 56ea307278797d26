package relay

import (
	"context"
	"slices"
	"strings"

	"github.com/pgrelay/pgrelay/route"
)

// Filter says whether an event is for a handler. See Only.
type Filter func(e *Event) bool

// Tables passes the events of the named tables: "schema.table", or a bare
// "table" in schema public, names as they are (unquoted).
func Tables(names ...string) Filter {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		if !strings.Contains(n, ".") {
			n = route.DefaultSchema + "." + n
		}
		want[n] = true
	}
	return func(e *Event) bool { return e.Action != ActionMessage && want[e.Schema+"."+e.Table] }
}

// Actions passes the events of the given actions.
func Actions(actions ...Action) Filter {
	return func(e *Event) bool { return slices.Contains(actions, e.Action) }
}

// Channels passes the events whose destination (Event.Channel) is one of
// channels: custom events by the channel they were published on, row
// events by their table's channel, "<schema>.<table>.cdc_events".
func Channels(channels ...string) Filter {
	return func(e *Event) bool { return slices.Contains(channels, e.Channel()) }
}

// Only restricts h to the events that pass every filter; the others count
// as delivered without reaching it. Lifecycle calls, batches (when h is a
// BatchHandler, it gets the passing events of each batch at once) and
// checkpoints are passed on. For example, a handler of new users only:
//
//	relay.Only(h, relay.Tables("public.users"), relay.Actions(relay.ActionInsert))
//
// For one filter passing any of several conditions, write a Filter.
func Only(h EventHandler, filters ...Filter) EventHandler {
	o := only{h: h, filters: filters}
	if _, ok := h.(BatchHandler); ok {
		return &onlyBatch{only: o}
	}
	return &o
}

// only is Only's handler for an EventHandler that takes events one by one.
type only struct {
	h       EventHandler
	filters []Filter
}

func (o *only) pass(e *Event) bool {
	for _, f := range o.filters {
		if !f(e) {
			return false
		}
	}
	return true
}

// OnStart passes the call on.
func (o *only) OnStart(ctx context.Context) error { return o.h.OnStart(ctx) }

// OnConnect passes the call on.
func (o *only) OnConnect(ctx context.Context) error { return o.h.OnConnect(ctx) }

// OnClose passes the call on.
func (o *only) OnClose(ctx context.Context) error { return o.h.OnClose(ctx) }

// OnEvent passes e on if it passes the filters.
func (o *only) OnEvent(ctx context.Context, e Event) error {
	if !o.pass(&e) {
		return nil
	}
	return o.h.OnEvent(ctx, e)
}

// Checkpoint passes the checkpoint on to a CheckpointHandler.
func (o *only) Checkpoint(d Delivery) {
	if c, ok := o.h.(CheckpointHandler); ok {
		c.Checkpoint(d)
	}
}

// onlyBatch is Only's handler for a BatchHandler.
type onlyBatch struct {
	only
	kept []Event
}

// OnEvents passes the events that pass the filters on, in one batch.
func (o *onlyBatch) OnEvents(ctx context.Context, events []Event) error {
	o.kept = o.kept[:0]
	for i := range events {
		if o.pass(&events[i]) {
			o.kept = append(o.kept, events[i])
		}
	}
	if len(o.kept) == 0 {
		return nil
	}
	return o.h.(BatchHandler).OnEvents(ctx, o.kept)
}
