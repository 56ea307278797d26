// Package nats is pgrelay's NATS JetStream sink: a relay.EventHandler that
// publishes each event as one JSON object (see relay.Event.MarshalJSON) on
// its subject, "<schema>.<table>.cdc_events" by default or a custom event's
// channel, into a JetStream stream (Config.Stream, "PGRELAY" by default),
// which it creates if it is missing.
//
// An event counts as delivered only once JetStream has acknowledged it: it
// is stored in the stream. Each message carries the header Nats-Msg-Id,
// "<relay name>:<event id>", so that when the relay hands out a batch again
// (after a failed publish, a crash or a takeover) JetStream drops what it
// already stored: the stream holds each event once, as long as the repeat
// comes within the stream's duplicate window (Config.DuplicateWindow, two
// minutes by default). A repeat after a longer outage is stored again.
//
// The handler publishes a batch asynchronously, at most Config.MaxPending
// messages awaiting their acknowledgement at a time, in order, on one
// connection, so that the stream keeps each subject's events in the order
// the relay hands them out. When the connection is lost mid-batch the
// handler stops publishing that batch and returns an error; publishes are
// not buffered while reconnecting, so that what the retry sends goes out
// after, never before, what was already stored.
package nats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgrelay/pgrelay/relay"
)

// Handler is the NATS JetStream sink. Create it with New. It is safe for
// concurrent use, also by relays of different names.
type Handler struct {
	relay.BaseHandler
	cfg Config

	mu sync.Mutex
	nc *natsgo.Conn
	js jetstream.JetStream
	// subjects are the stream's subjects, as last read or set.
	subjects []string
	// lost counts the connection's disconnections, so that a batch can
	// tell it was cut in the middle.
	lost atomic.Uint64
}

// New returns a handler publishing to cfg.URL. It connects in OnStart.
func New(cfg Config) (*Handler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Handler{cfg: cfg.withDefaults()}, nil
}

// Config returns the handler's configuration, defaults filled in.
func (h *Handler) Config() Config { return h.cfg }

// OnStart connects to NATS and makes sure the stream exists, so that an
// unreachable server shows up at start rather than at the first event.
func (h *Handler) OnStart(ctx context.Context) error {
	_, _, err := h.connect(ctx, true)
	return err
}

// OnConnect makes sure the stream exists and covers the subjects, with
// each new PostgreSQL session: someone may have deleted or changed it.
func (h *Handler) OnConnect(ctx context.Context) error {
	_, _, err := h.connect(ctx, true)
	return err
}

// OnEvent publishes one event.
func (h *Handler) OnEvent(ctx context.Context, e relay.Event) error {
	return h.OnEvents(ctx, []relay.Event{e})
}

// OnClose drains the connection: what was published is flushed, then the
// connection is closed.
func (h *Handler) OnClose(ctx context.Context) error {
	h.mu.Lock()
	nc := h.nc
	h.nc, h.js = nil, nil
	h.mu.Unlock()
	if nc == nil {
		return nil
	}
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*natsgo.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return nil
	}
	select {
	case <-closed:
	case <-ctx.Done():
		nc.Close()
	}
	return nil
}

// connect returns the JetStream context and the stream's subjects,
// connecting first if need be, and with ensure checks the stream.
func (h *Handler) connect(ctx context.Context, ensure bool) (jetstream.JetStream, []string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.nc == nil || h.nc.IsClosed() {
		nc, err := natsgo.Connect(h.cfg.URL,
			natsgo.Name("pgrelay"),
			natsgo.Timeout(h.cfg.Timeout),
			natsgo.MaxReconnects(-1),
			natsgo.ReconnectWait(100*time.Millisecond),
			// Not buffered while reconnecting: a publish then fails, and
			// nothing of a failed batch reaches the stream after its
			// retry.
			natsgo.ReconnectBufSize(-1),
			natsgo.DisconnectErrHandler(func(*natsgo.Conn, error) { h.lost.Add(1) }),
		)
		if err != nil {
			return nil, nil, fmt.Errorf("nats handler: connect to %s: %w", redactList(h.cfg.URL), err)
		}
		js, err := jetstream.New(nc,
			jetstream.WithPublishAsyncMaxPending(h.cfg.MaxPending),
			jetstream.WithPublishAsyncTimeout(h.cfg.Timeout),
			jetstream.WithDefaultTimeout(h.cfg.Timeout),
		)
		if err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("nats handler: %w", err)
		}
		h.nc, h.js, h.subjects = nc, js, nil
		ensure = true
	}
	if ensure || h.subjects == nil {
		subjects, err := h.ensureStream(ctx, h.js)
		if err != nil {
			return nil, nil, err
		}
		h.subjects = subjects
	}
	return h.js, h.subjects, nil
}

// ensureStream creates the stream if it is missing, or adds to it the
// subjects of Config.Subjects it does not cover, and returns its subjects.
func (h *Handler) ensureStream(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		s, err := js.Stream(ctx, h.cfg.Stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = js.CreateStream(ctx, jetstream.StreamConfig{
				Name:       h.cfg.Stream,
				Subjects:   h.cfg.Subjects,
				Duplicates: h.cfg.DuplicateWindow,
				Storage:    jetstream.FileStorage,
			})
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && attempt == 0 {
				continue // created meanwhile by another relay: read it
			}
			if err != nil {
				return nil, fmt.Errorf("nats handler: create stream %s: %w", h.cfg.Stream, err)
			}
			return slices.Clone(h.cfg.Subjects), nil
		}
		if err != nil {
			return nil, fmt.Errorf("nats handler: look up stream %s: %w", h.cfg.Stream, err)
		}
		cfg := s.CachedInfo().Config
		have := cfg.Subjects
		for _, sub := range h.cfg.Subjects {
			if !coveredBy(cfg.Subjects, sub) {
				cfg.Subjects = append(slices.Clone(cfg.Subjects), sub)
			}
		}
		if len(cfg.Subjects) == len(have) {
			return slices.Clone(have), nil
		}
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("nats handler: add subjects %v to stream %s: %w", cfg.Subjects, h.cfg.Stream, err)
		}
		return slices.Clone(cfg.Subjects), nil
	}
}

// OnEvents publishes events in order and returns once JetStream has
// acknowledged every one of them, or with the first failure. A batch that
// failed is handed out again by the relay, and JetStream drops what of it
// it already stored (see the package documentation).
func (h *Handler) OnEvents(ctx context.Context, events []relay.Event) error {
	js, subjects, err := h.connect(ctx, false)
	if err != nil {
		return err
	}

	name := relay.DefaultName
	if d, ok := relay.DeliveryOf(ctx); ok && d.Name != "" {
		name = d.Name
	}

	// Subjects first: an event the stream cannot take fails the batch
	// before any of it is sent.
	subs := make([]string, len(events))
	size := 0
	// A batch's events have few subjects (one per table): each is checked
	// once, not once per event (the checks split it into tokens).
	checked := map[string]bool{}
	for i := range events {
		e := &events[i]
		sub := h.cfg.Subject(e)
		subs[i] = sub
		size += 160 + len(e.Data) + len(e.Changes) + len(e.Key)
		if checked[sub] {
			continue
		}
		if !validSubject(sub, false) {
			return relay.Permanent(fmt.Errorf("nats handler: event %d: %q is not a NATS subject", e.ID, sub))
		}
		if !coveredBy(subjects, sub) {
			return relay.Permanent(fmt.Errorf("nats handler: event %d: subject %q is not among stream %s's subjects %v (add it to Config.Subjects)",
				e.ID, sub, h.cfg.Stream, subjects))
		}
		checked[sub] = true
	}

	// One buffer for the batch's payloads, not reused: a message may be
	// held by the client after its publish timed out.
	buf := make([]byte, 0, size)
	prefix := name + ":"
	futures := make([]jetstream.PubAckFuture, 0, len(events))
	lost := h.lost.Load()
	oldest := 0
	var failure error
	fail := func(i int, err error) {
		if failure == nil {
			failure = fmt.Errorf("nats handler: publish event %d to %s: %w", events[i].ID, subs[i], err)
		}
	}
	for i := range events {
		for len(futures)-oldest >= h.cfg.MaxPending && failure == nil {
			if err := wait(ctx, futures[oldest]); err != nil {
				fail(oldest, err)
			}
			oldest++
		}
		if failure != nil {
			break
		}
		if h.lost.Load() != lost {
			fail(i, errors.New("the connection to NATS was lost in the middle of the batch"))
			break
		}
		start := len(buf)
		buf = events[i].AppendJSON(buf)
		msg := &natsgo.Msg{
			Subject: subs[i],
			Data:    buf[start:len(buf):len(buf)],
			Header:  natsgo.Header{jetstream.MsgIDHeader: []string{prefix + strconv.FormatInt(events[i].ID, 10)}},
		}
		f, err := js.PublishMsgAsync(msg, jetstream.WithStallWait(h.cfg.Timeout))
		if err != nil {
			fail(i, err)
			break
		}
		futures = append(futures, f)
	}
	// Wait for what is in flight even after a failure, so that nothing
	// of this batch is still on its way when the relay sends it again.
	for ; oldest < len(futures); oldest++ {
		if err := wait(ctx, futures[oldest]); err != nil {
			fail(oldest, err)
		}
	}
	return failure
}

// wait returns once JetStream has acknowledged f's message, with the
// error if it refused it or the acknowledgement timed out.
func wait(ctx context.Context, f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
