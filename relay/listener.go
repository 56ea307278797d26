package relay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// The payloads seen on the channel: the capture trigger sends a transaction
// id (digits); the watchdog sends watchdogPrefix, the relay instance and a
// sequence number.
const watchdogPrefix = "pgrelay-watchdog:"

// wakeUp tells the delivery loop that a writer committed; wake-ups that
// come while one is pending fold into it.
func (s *session) wakeUp() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// listenLoop turns the notifications on the LISTEN connection into wake-ups
// and watchdog echoes, until the session ends.
func (s *session) listenLoop(ctx context.Context) error {
	ours := watchdogPrefix + s.r.instance + ":"
	for {
		n, err := s.listen.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("wait for notification: %w", err)
		}
		switch {
		case isTxid(n.Payload):
			s.wakeUp()
		case strings.HasPrefix(n.Payload, ours):
			if seq, err := strconv.ParseUint(n.Payload[len(ours):], 10, 64); err == nil {
				select {
				case s.pongs <- seq:
				default:
				}
			}
		case strings.HasPrefix(n.Payload, watchdogPrefix):
			// Another relay's watchdog.
		default:
			s.r.observe(Activity{Kind: ActivityForeignNotification})
			s.r.log.Warn("ignoring a notification that pgrelay did not send",
				"channel", n.Channel, "payload", truncate(n.Payload, 64), "sender_pid", n.PID)
		}
	}
}

func isTxid(p string) bool {
	if p == "" || len(p) > 20 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// truncate shortens s to at most n bytes, on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// checkEcho finds out whether LISTEN works on this path: it sends a NOTIFY
// from the watchdog connection and waits up to Timeout for it on the
// listener. Behind a connection pooler in transaction mode it never
// arrives; the session then polls (see watchdogLoop), and leaves the
// server-side session settings alone.
func (s *session) checkEcho(ctx context.Context) error {
	r := s.r
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	payload := watchdogPrefix + r.instance + ":0"
	if err := sqlkit.Notify(ctx, s.watchdog, payload); err != nil {
		return err
	}
	for {
		n, err := s.listen.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() == nil || errors.Is(context.Cause(ctx), context.Canceled) {
				return fmt.Errorf("wait for notification: %w", err)
			}
			return nil // timed out: no echo, so no LISTEN on this path
		}
		switch {
		case n.Payload == payload:
			s.direct.Store(true)
			return nil
		case isTxid(n.Payload):
			s.wakeUp()
		}
	}
}
