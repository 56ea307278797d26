package relay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// errNotifyLost means the database answered the watchdog but its
// notification never reached the LISTEN connection.
var errNotifyLost = errors.New("the LISTEN connection did not receive the watchdog's notification")

// watchdogLoop checks the connections every WatchdogInterval. Each check is
// also this relay's heartbeat: it refreshes its registration and, while it
// is active, renews its lease.
//
// If the check made when connecting found that notifications do not arrive
// although the database answers, LISTEN cannot work on this path
// (typically a connection pooler in transaction mode): the session then
// relies on polling the outbox every PollInterval, and the watchdog checks
// only that the database answers.
func (s *session) watchdogLoop(ctx context.Context) error {
	polling := !s.direct.Load() // found by checkEcho when connecting
	s.r.setPolling(polling)
	t := time.NewTicker(s.r.cfg.WatchdogInterval)
	defer t.Stop()
	for seq := uint64(1); ; seq++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := s.probe(ctx, seq, !polling); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// setPolling logs when the relay falls back to polling, and when LISTEN
// works again, once per change.
func (r *Relay) setPolling(on bool) {
	if r.polling.Swap(on) == on {
		return
	}
	if on {
		r.observe(Activity{Kind: ActivityPolling})
		r.log.Warn("notifications do not reach the LISTEN connection (is a connection pooler in transaction mode "+
			"in between?); falling back to polling the outbox", "poll_interval", r.cfg.PollInterval)
	} else {
		r.observe(Activity{Kind: ActivityNotified})
		r.log.Info("notifications work again; polling only as a safety net")
	}
}

// probe sends the heartbeat with a NOTIFY over the watchdog connection
// and, with wantEcho, waits up to Timeout for the listener to receive it:
// one full round trip through the database and both connections. It gives
// up sooner when the lease would run out first, so that the session ends
// before a standby may take over.
func (s *session) probe(ctx context.Context, seq uint64, wantEcho bool) error {
	r := s.r
	deadline := time.Now().Add(r.cfg.Timeout)
	lease, held, until := r.lease.get()
	if held && until.Before(deadline) {
		deadline = until
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var renew *sqlkit.Lease
	if held {
		renew = &lease
	}
	payload := watchdogPrefix + r.instance + ":" + strconv.FormatUint(seq, 10)
	sent := time.Now()
	ttl := r.cfg.leaseTTL()
	if err := sqlkit.Heartbeat(ctx, s.watchdog, s.instanceInfo(), renew, ttl, payload); err != nil {
		if errors.Is(err, sqlkit.ErrLeaseLost) {
			return err
		}
		if held && !time.Now().Before(until) {
			return fmt.Errorf("%w: %w", ErrWatchdog, errLeaseLapsed)
		}
		return fmt.Errorf("%w: the database did not answer within %s: %w", ErrWatchdog, r.cfg.Timeout, err)
	}
	if held {
		r.lease.renewed(lease.Token, sent, ttl)
	}
	if !wantEcho {
		return nil
	}
	for {
		select {
		case got := <-s.pongs:
			if got == seq {
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("%w: %w within %s", ErrWatchdog, errNotifyLost, r.cfg.Timeout)
		}
	}
}
