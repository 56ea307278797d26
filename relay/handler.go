package relay

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
)

// EventHandler receives a relay's events and lifecycle.
//
// The relay calls one handler from one goroutine at a time, so a handler
// needs no locking for its own state, but a handler shared between relays
// must be safe for concurrent use. Events arrive in (Txid, ID) order: all of
// one transaction's events together, in the order they were written.
//
// Delivery is at least once. An event counts as delivered only when every
// handler has returned nil for it; an error (or a panic, which is recovered)
// makes the relay retry the same events with backoff, never skip them. After
// a crash the last batch may be delivered again, so handlers should be
// idempotent, for example by remembering Event.ID.
//
// Embed BaseHandler to implement only the methods you need.
type EventHandler interface {
	// OnStart is called once, before the relay first connects. An error
	// stops the relay from starting.
	OnStart(ctx context.Context) error
	// OnConnect is called after each (re)connection, once LISTEN is active
	// and before the backlog is delivered. An error fails the connection,
	// which is retried.
	OnConnect(ctx context.Context) error
	// OnEvent is called for each event, unless the handler implements
	// BatchHandler.
	OnEvent(ctx context.Context, e Event) error
	// OnClose is called once when the relay stops.
	OnClose(ctx context.Context) error
}

// BatchHandler is implemented by handlers that can take many events at once,
// such as the Redis handler, which pipelines them. When a handler implements
// it, the relay calls OnEvents instead of OnEvent. The slice and the events'
// JSON fields are reused after OnEvents returns; copy what you keep.
type BatchHandler interface {
	OnEvents(ctx context.Context, events []Event) error
}

// BaseHandler implements the lifecycle methods of EventHandler as no-ops, to
// embed in handlers that only need some of them. Its OnEvent returns
// ErrNoEventMethod: a handler must define OnEvent or OnEvents itself, and a
// mistyped one must not silently swallow events.
type BaseHandler struct{}

// ErrNoEventMethod is returned by BaseHandler.OnEvent, which is only called
// when the embedding handler defines neither OnEvent nor a correct OnEvents
// (func(context.Context, []relay.Event) error). The relay keeps retrying,
// so no event is lost while the handler is fixed.
var ErrNoEventMethod = errors.New("relay: the handler embeds BaseHandler but defines neither OnEvent nor OnEvents(context.Context, []relay.Event) error")

// OnStart does nothing.
func (BaseHandler) OnStart(context.Context) error { return nil }

// OnConnect does nothing.
func (BaseHandler) OnConnect(context.Context) error { return nil }

// OnEvent returns ErrNoEventMethod.
func (BaseHandler) OnEvent(context.Context, Event) error { return ErrNoEventMethod }

// OnClose does nothing.
func (BaseHandler) OnClose(context.Context) error { return nil }

// HandlerFunc adapts a function to an EventHandler whose lifecycle methods
// do nothing.
type HandlerFunc func(ctx context.Context, e Event) error

// OnStart does nothing.
func (HandlerFunc) OnStart(context.Context) error { return nil }

// OnConnect does nothing.
func (HandlerFunc) OnConnect(context.Context) error { return nil }

// OnEvent calls f(ctx, e).
func (f HandlerFunc) OnEvent(ctx context.Context, e Event) error { return f(ctx, e) }

// OnClose does nothing.
func (HandlerFunc) OnClose(context.Context) error { return nil }

// PanicError is the error a handler's recovered panic turns into.
type PanicError struct {
	Value any
	Stack []byte
}

// Error describes the panic value; the stack is in Stack.
func (e *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.Value) }

// deliverTo hands events to h, as one batch when h supports it, turning a
// panic into a *PanicError. It returns how many events h accepted, so that a
// retry resumes after them rather than repeating them.
// With oneByOne, a BatchHandler gets the events through OnEvent.
func deliverTo(ctx context.Context, h EventHandler, events []Event, oneByOne bool) (accepted int, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	if bh, ok := h.(BatchHandler); ok && !oneByOne {
		if err := bh.OnEvents(ctx, events); err != nil {
			return 0, err
		}
		return len(events), nil
	}
	for i := range events {
		if err := h.OnEvent(ctx, events[i]); err != nil {
			return accepted, err
		}
		accepted = i + 1
	}
	return accepted, nil
}

// PermanentError marks a handler error as one that retrying will not fix,
// such as an event the downstream system rejects as invalid. Create it with
// Permanent.
type PermanentError struct{ Err error }

// Permanent wraps err so that the relay, after Config.MaxAttempts tries,
// parks the event in cdc.failed_event and goes on with the next one, instead
// of retrying forever. Permanent(nil) is nil. A batch handler that returns a
// permanent error has the batch retried one event at a time (OnEvent), to
// find the event at fault.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// Error returns the wrapped error's text.
func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }
