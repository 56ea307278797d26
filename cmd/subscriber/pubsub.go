package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Timeouts of a pub/sub connection: how long to wait for Redis to confirm
// a subscription, and how long a silent connection stays unchecked (then a
// PING must be answered within as long again).
const (
	subscribeTimeout = 10 * time.Second
	pingInterval     = 5 * time.Second
)

// subscription is what one pub/sub connection listens to.
type subscription struct {
	chans, patterns []string
	sharded         bool
}

// String names the channels and patterns of sub.
func (sub subscription) String() string {
	return strings.Join(append(append([]string(nil), sub.chans...), sub.patterns...), ", ")
}

// subscriptions splits cfg's channels and patterns into connections: one
// for classic pub/sub, which any node of a cluster serves; one per channel
// for sharded pub/sub, since each channel lives on its slot's node and one
// SSUBSCRIBE takes channels of a single slot only.
func subscriptions(cfg *config) []subscription {
	chans := append(append([]string(nil), cfg.names...), cfg.customs...)
	if !cfg.sharded {
		return []subscription{{chans: chans, patterns: cfg.patterns}}
	}
	subs := make([]subscription, len(chans))
	for i, ch := range chans {
		subs[i] = subscription{chans: []string{ch}, sharded: true}
	}
	return subs
}

// runPubSub prints the messages of cfg's channels and patterns until ctx
// ends. Failing to subscribe at first is an error; afterwards each
// connection that fails is opened again until Redis is back (messages
// published meanwhile are missed: pub/sub keeps nothing).
func runPubSub(ctx context.Context, s *session, cfg *config, errOut io.Writer) error {
	subs := subscriptions(cfg)
	listeners := make([]*listener, 0, len(subs))
	defer func() {
		for _, l := range listeners {
			l.close()
		}
	}()
	for _, sub := range subs {
		l, err := s.open(ctx, sub)
		if err != nil {
			return s.stopped(ctx, fmt.Errorf("subscribe to %s: %w", sub, err))
		}
		listeners = append(listeners, l)
	}
	kind := ""
	if cfg.sharded {
		kind = " (sharded pub/sub)"
	}
	if len(cfg.customs) > 0 {
		kind += ", and to custom events on " + strings.Join(cfg.customs, ", ")
	}
	fmt.Fprintf(errOut, "subscribed to %s%s\n", strings.Join(append(append([]string(nil), cfg.names...), cfg.patterns...), ", "), kind)
	s.health.recovered = "; subscribed again (messages published meanwhile were missed)"

	fns := make([]func(context.Context) error, len(subs))
	for i, sub := range subs {
		fns[i] = func(ctx context.Context) error {
			return s.listen(ctx, sub, &listeners[i])
		}
	}
	return runAll(ctx, fns)
}

// listener is one open pub/sub connection.
type listener struct {
	ps *redis.PubSub
	// unwatch stops the closing of ps when the run's context ends.
	unwatch func() bool
	// early holds the messages that arrived while the subscriptions were
	// being confirmed, to be printed first.
	early []*redis.Message
}

// close closes l's connection.
func (l *listener) close() {
	l.unwatch()
	_ = l.ps.Close()
}

// open subscribes to sub on a new connection and waits until Redis has
// confirmed every channel and pattern, so that messages published from
// then on are received. The connection is closed when ctx ends.
func (s *session) open(ctx context.Context, sub subscription) (*listener, error) {
	var ps *redis.PubSub
	var err error
	if sub.sharded {
		ps = s.rdb.SSubscribe(ctx)
		err = ps.SSubscribe(ctx, sub.chans...)
	} else {
		ps = s.rdb.Subscribe(ctx)
		if len(sub.chans) > 0 {
			err = ps.Subscribe(ctx, sub.chans...)
		}
		if err == nil && len(sub.patterns) > 0 {
			err = ps.PSubscribe(ctx, sub.patterns...)
		}
	}
	l := &listener{ps: ps, unwatch: s.whenOver(ctx, func() { _ = ps.Close() })}
	for want := len(sub.chans) + len(sub.patterns); err == nil && want > 0; {
		var msg any
		msg, err = ps.ReceiveTimeout(ctx, subscribeTimeout)
		switch m := msg.(type) {
		case *redis.Subscription:
			want--
		case *redis.Message:
			l.early = append(l.early, m)
		}
	}
	if err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

// listen prints what *l receives until ctx ends, opening a new connection
// (replacing *l) whenever the current one fails.
func (s *session) listen(ctx context.Context, sub subscription, l **listener) error {
	var b backoff
	for {
		err := s.receive(ctx, *l)
		if err == nil || s.over(ctx) {
			return nil
		}
		(*l).close()
		for {
			if stop, fatal := s.retry(ctx, sub.String(), &b, err); stop {
				return fatal
			}
			var next *listener
			if next, err = s.open(ctx, sub); err == nil {
				*l = next
				break
			}
		}
		b.reset()
		s.health.ok(sub.String())
	}
}

// receive prints l's messages, first those that came early, until the
// connection fails (the error), the connection goes silent, or --count is
// reached (nil).
func (s *session) receive(ctx context.Context, l *listener) error {
	for _, m := range l.early {
		if res, err := s.out.emit(m.Channel, m.Payload); err != nil || res == limited {
			return err
		}
	}
	l.early = nil
	pinged := false
	for {
		msg, err := l.ps.ReceiveTimeout(ctx, pingInterval)
		var netErr net.Error
		switch {
		case err == nil:
		case !errors.As(err, &netErr) || !netErr.Timeout():
			return err
		case pinged:
			return fmt.Errorf("no answer to PING from redis in %s", pingInterval)
		default:
			if err := l.ps.Ping(ctx); err != nil {
				return err
			}
			pinged = true
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Message:
			if res, err := s.out.emit(m.Channel, m.Payload); err != nil || res == limited {
				return err
			}
		case *redis.Subscription:
			if strings.HasSuffix(m.Kind, "unsubscribe") {
				// Redis ends a sharded subscription when its slot moves
				// to another node: subscribe again, there.
				return fmt.Errorf("redis ended the subscription to %s (%s)", m.Channel, m.Kind)
			}
		}
	}
}
