// Package amqp is pgrelay's RabbitMQ (AMQP 0-9-1) sink: a
// relay.EventHandler that publishes each event as one JSON object (see
// relay.Event.MarshalJSON) to a durable topic exchange, "pgrelay" by
// default, declared if missing, with the routing key
// "<schema>.<table>.<action>" (a custom event's is its channel).
//
// Messages are persistent (delivery mode 2), of content type
// application/json, stamped with the event's timestamp, and their
// message_id is "<relay name>:<event_id>", unique per relay name, so that
// consumers can drop the duplicates at-least-once delivery brings after a
// retry or a crash.
//
// The channel is in confirm mode: a batch counts as delivered only once the
// broker has confirmed every message of it. A negative confirm, a closed
// channel or connection, or no confirm within Config.Timeout makes
// OnEvents fail, the relay retries the batch, and the handler reconnects
// first. RabbitMQ confirms a message once every queue it was routed to has
// it (on disk, for a durable queue); a message no queue is bound for is
// confirmed and dropped, as a topic exchange does: bind the queues before
// the relay starts.
package amqp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/pgrelay/pgrelay/relay"
)

// defaultHeartbeat is how often the connection is checked, amqp091's own
// default: a broker gone silent closes it within about three of these.
const defaultHeartbeat = 10 * time.Second

// Handler is the RabbitMQ sink. Create it with New. It is safe for
// concurrent use, also by relays of different names; batches are published
// one at a time.
type Handler struct {
	relay.BaseHandler
	cfg Config

	mu   sync.Mutex
	conn *amqp091.Connection
	ch   *amqp091.Channel
	// closed receives the channel's (or, through it, the connection's)
	// close reason, to tell why confirms failed.
	closed chan *amqp091.Error
	buf    []byte
	// pending is reused between batches.
	pending []*amqp091.DeferredConfirmation
}

// New returns a handler publishing to the broker at cfg.URL. It does not
// connect: OnStart does.
func New(cfg Config) (*Handler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Handler{cfg: cfg.withDefaults()}, nil
}

// Config returns the handler's configuration, defaults filled in.
func (h *Handler) Config() Config { return h.cfg }

// OnStart connects, so that a wrong URL, credentials or an exchange of
// another type stops the relay from starting.
func (h *Handler) OnStart(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ensure(ctx)
}

// OnConnect connects again if the connection was lost.
func (h *Handler) OnConnect(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ensure(ctx)
}

// OnClose closes the connection. A later OnEvents connects again.
func (h *Handler) OnClose(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.drop()
}

// OnEvent publishes one event; the relay calls it when it retries a batch
// one event at a time.
func (h *Handler) OnEvent(ctx context.Context, e relay.Event) error {
	return h.OnEvents(ctx, []relay.Event{e})
}

// OnEvents publishes events in order and returns once the broker has
// confirmed them all, or an error, after which the next call reconnects.
func (h *Handler) OnEvents(ctx context.Context, events []relay.Event) error {
	if len(events) == 0 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.ensure(ctx); err != nil {
		return err
	}
	err := h.publish(ctx, events)
	if err != nil {
		// Whatever the channel's state, start over: confirms still on the
		// way would otherwise be waited for by no one, and a channel the
		// broker closed is no use.
		_ = h.drop()
	}
	return err
}

// publish sends events and waits for their confirms.
func (h *Handler) publish(ctx context.Context, events []relay.Event) error {
	name := relay.DefaultName
	if d, ok := relay.DeliveryOf(ctx); ok && d.Name != "" {
		name = d.Name
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()

	pending := h.pending[:0]
	defer func() {
		clear(pending)
		h.pending = pending[:0]
	}()
	for i := range events {
		e := &events[i]
		// The body is written to the connection before Publish returns,
		// so one buffer serves every message.
		h.buf = e.AppendJSON(h.buf[:0])
		idStart := len(h.buf)
		h.buf = append(h.buf, name...)
		h.buf = append(h.buf, ':')
		h.buf = strconv.AppendInt(h.buf, e.ID, 10)
		msg := amqp091.Publishing{
			ContentType:  "application/json",
			DeliveryMode: amqp091.Persistent,
			MessageId:    string(h.buf[idStart:]),
			Timestamp:    e.Timestamp,
			Body:         h.buf[:idStart],
		}
		dc, err := h.ch.PublishWithDeferredConfirmWithContext(ctx, h.cfg.Exchange, h.cfg.RoutingKey(e), false, false, msg)
		if err != nil {
			return h.failed(fmt.Errorf("publish event %d to amqp exchange %q: %w", e.ID, h.cfg.Exchange, err))
		}
		pending = append(pending, dc)
	}
	for i, dc := range pending {
		ack, err := dc.WaitContext(ctx)
		if err != nil {
			return h.failed(fmt.Errorf("amqp: %d of %d events not confirmed within %s: %w", len(pending)-i, len(pending), h.cfg.Timeout, err))
		}
		if !ack {
			return h.failed(fmt.Errorf("amqp: the broker did not take event %d (exchange %q)", events[i].ID, h.cfg.Exchange))
		}
	}
	return nil
}

// failed adds the channel's close reason to err, when the broker gave one.
func (h *Handler) failed(err error) error {
	select {
	case reason, ok := <-h.closed:
		if ok && reason != nil {
			return scrub(fmt.Errorf("%w: %w", err, reason), h.cfg.URL)
		}
	default:
	}
	return scrub(err, h.cfg.URL)
}

// ensure connects unless the handler has a usable channel.
func (h *Handler) ensure(ctx context.Context) error {
	if h.ch != nil && !h.ch.IsClosed() && !h.conn.IsClosed() {
		return nil
	}
	_ = h.drop()
	if err := ctx.Err(); err != nil {
		return err
	}
	conn, err := amqp091.DialConfig(h.cfg.URL, amqp091.Config{
		Heartbeat: defaultHeartbeat,
		Locale:    "en_US",
		Dial:      dialContext(ctx, h.cfg.Timeout),
		Properties: amqp091.Table{
			"product":         "pgrelay",
			"connection_name": "pgrelay",
		},
	})
	if err != nil {
		return h.connectError(err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err == nil {
		err = ch.ExchangeDeclare(h.cfg.Exchange, amqp091.ExchangeTopic, true, false, false, false, nil)
	}
	if err != nil {
		_ = conn.Close()
		return h.connectError(fmt.Errorf("declare exchange %q: %w", h.cfg.Exchange, err))
	}
	h.conn, h.ch = conn, ch
	// A channel's close also reports the connection's.
	h.closed = ch.NotifyClose(make(chan *amqp091.Error, 1))
	return nil
}

func (h *Handler) connectError(err error) error {
	return scrub(fmt.Errorf("amqp: connect to %s: %w", relay.RedactURL(h.cfg.URL), err), h.cfg.URL)
}

// drop closes the connection, if any.
func (h *Handler) drop() error {
	if h.conn == nil {
		return nil
	}
	// A deadline, since a broker that blocks publishers (memory or disk
	// alarm) stops reading the connection and would never answer.
	err := h.conn.CloseDeadline(time.Now().Add(h.cfg.Timeout))
	h.conn, h.ch, h.closed = nil, nil, nil
	var ne net.Error
	if errors.Is(err, amqp091.ErrClosed) || errors.As(err, &ne) {
		// Closed already, or now, by giving up on the socket.
		err = nil
	}
	return scrub(err, h.cfg.URL)
}

// dialContext is amqp091.DefaultDial that also gives up when ctx ends.
func dialContext(ctx context.Context, timeout time.Duration) func(network, addr string) (net.Conn, error) {
	return func(network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: timeout}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		// Covers TLS and the AMQP handshake; amqp091 clears it once open.
		if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
			_ = conn.Close()
			return nil, err
		}
		return conn, nil
	}
}
