package relay

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// Leadership among relays of one name is a lease on their cursor row (see
// sqlkit/lease.go for the protocol in the database). Here: when a relay
// takes it, renews it and gives it up, and what it cleans up on the way.
//
// Timing. The active relay renews the lease with every watchdog check, at
// least every max(WatchdogInterval, Timeout) since each check takes at most
// Timeout; a renewal extends it to leaseTTL from when the database ran it.
// The relay counts its lease as valid until leaseTTL after it *sent* the
// renewal, which is earlier, and ends the session when it cannot renew by
// then. A standby tries to take the lease every RetryInterval. So after the
// active relay froze, was cut off or killed, a standby holds the lease
// within leaseTTL + RetryInterval, and the old holder stopped delivering
// before that. A relay that reconnects takes its own lease back at once.

// leaseTTL is how long a lease lasts after each renewal: the longest gap
// between two renewals of a healthy relay (max(WatchdogInterval, Timeout))
// plus the longest a renewal may take (Timeout).
func (c Config) leaseTTL() time.Duration {
	return max(c.WatchdogInterval, c.Timeout) + c.Timeout
}

// TakeoverBound is how long, at most, delivery pauses when the active relay
// is frozen, cut off from PostgreSQL by a partition, or killed: by then a
// standby has taken over, or the relay itself has reconnected, and fetched
// its first batch. It is max(WatchdogInterval, Timeout) + 2×Timeout +
// RetryInterval, for the Config with its defaults applied (20s).
func (c Config) TakeoverBound() time.Duration {
	c = c.withDefaults()
	return c.leaseTTL() + c.RetryInterval + c.Timeout
}

// leaseState is the lease as this relay knows it, shared by the delivery
// loop, which writes with its token, and the watchdog, which renews it.
type leaseState struct {
	mu    sync.Mutex
	held  bool
	lease sqlkit.Lease
	// until: the lease has certainly not expired before this, by the
	// local clock (leaseTTL after the last renewal was sent).
	until time.Time
}

// set records a lease taken, or renewed, by a statement sent at sent.
func (l *leaseState) set(lease sqlkit.Lease, sent time.Time, ttl time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held, l.lease, l.until = true, lease, sent.Add(ttl)
}

// renewed extends the lease after a renewal sent at sent, unless it was
// dropped or replaced meanwhile.
func (l *leaseState) renewed(token int64, sent time.Time, ttl time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held && l.lease.Token == token {
		l.until = sent.Add(ttl)
	}
}

// drop forgets the lease: it was lost, or the session that held it ended.
func (l *leaseState) drop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held = false
}

// get returns the lease, whether it is held, and until when it is valid.
func (l *leaseState) get() (sqlkit.Lease, bool, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lease, l.held, l.until
}

// valid reports whether the lease is held and has not run out.
func (l *leaseState) valid() bool {
	_, held, until := l.get()
	return held && time.Now().Before(until)
}

// errLeaseLapsed ends a session whose lease ran out before it was renewed:
// a standby may hold it by now, so this relay must not deliver.
var errLeaseLapsed = errors.New("the lease ran out before it could be renewed")

// instanceInfo is how this relay registers itself, with the session's
// backends.
func (s *session) instanceInfo() sqlkit.Instance {
	r := s.r
	return sqlkit.Instance{
		Name: r.cfg.Name, ID: r.instance, Host: r.host, PID: r.pid,
		Backends: s.backends, Direct: s.direct.Load(),
	}
}

// acquire makes this relay the one delivering for its name, standing by
// while another holds the lease, then loads the cursor. It returns nil
// without the lease only when the relay is stopping.
func (s *session) acquire(ctx context.Context) error {
	r := s.r
	tctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	err := sqlkit.Register(tctx, s.worker, s.instanceInfo(), r.cfg.leaseTTL())
	cancel()
	if err != nil {
		return err
	}
	var lease sqlkit.Lease
	for waited := false; ; waited = true {
		l, ok, st, err := s.tryAcquire(ctx)
		if err != nil {
			return err
		}
		if ok {
			lease = l
			if waited || l.Previous != "" {
				r.log.Info("took over delivery", "name", r.cfg.Name, "from", l.Previous)
			}
			r.observe(Activity{Kind: ActivityLeader})
			break
		}
		if !waited && !r.steppedDown {
			r.log.Info("another relay is delivering for this name; standing by", "name", r.cfg.Name)
		}
		if !waited {
			a := Activity{Kind: ActivityStandby}
			if r.steppedDown {
				a.Reason = "lease_lost"
			}
			r.observe(a)
		}
		r.steppedDown = false
		// Try again every RetryInterval, or as soon as the lease expires.
		wait := r.cfg.RetryInterval
		if !st.ExpiresAt.IsZero() {
			wait = min(wait, max(time.Until(st.ExpiresAt)+5*time.Millisecond, 10*time.Millisecond))
		}
		if !r.sleep(ctx, wait) {
			return nil
		}
	}
	r.steppedDown = false
	// The waiting state of sqlkit.EnterWaiting survives only a lease held
	// without a break: once it had expired, the relay that took over, or
	// this one, may have reset it (ResetWaiting), and undoing it again
	// would make writers stop notifying a relay that waits.
	if !lease.Since.Equal(r.lastLease.Since) {
		r.waiting = false
	}
	r.lastLease = lease
	if lease.Previous != "" && lease.Previous != s.ended {
		s.endBackendsOf(ctx, lease.Previous)
	}
	tctx, cancel = context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	c, err := sqlkit.LoadCursor(tctx, s.worker, r.cfg.Name)
	if err != nil {
		return err
	}
	s.cursor = c
	return nil
}

// tryAcquire takes the lease if it is free. When it looks free but its row
// stays locked, the previous holder's backends are ended and it tries once
// more (see sqlkit.ErrLeaseRowLocked). st is the lease as it was seen.
func (s *session) tryAcquire(ctx context.Context) (lease sqlkit.Lease, ok bool, st sqlkit.LeaseState, err error) {
	r := s.r
	ttl := r.cfg.leaseTTL()
	tctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	st, err = sqlkit.ReadLease(tctx, s.worker, r.cfg.Name)
	cancel()
	if err != nil || !st.Free && st.Holder != r.instance {
		return lease, false, st, err
	}
	for attempt := 0; ; attempt++ {
		sent := time.Now()
		tctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		lease, ok, err = sqlkit.AcquireLease(tctx, s.worker, r.cfg.Name, r.instance, ttl, r.cfg.Timeout/2, r.lastLease)
		cancel()
		if errors.Is(err, sqlkit.ErrLeaseRowLocked) && attempt == 0 && st.Holder != "" && st.Holder != r.instance {
			s.endBackendsOf(ctx, st.Holder)
			continue
		}
		if errors.Is(err, sqlkit.ErrLeaseRowLocked) {
			// Ours are ended before acquire (endOwnZombies); try later.
			r.log.Warn("the lease's row is locked; trying again", "name", r.cfg.Name)
			return lease, false, st, nil
		}
		if err != nil {
			return lease, false, st, err
		}
		if ok {
			r.lease.set(lease, sent, ttl)
		}
		return lease, ok, st, nil
	}
}

// endBackendsOf ends the backends of the relay instance whose lease this
// one took: behind a partition they may live on for hours, holding a
// LISTEN slot (and with it the notification queue's tail) and perhaps a
// transaction. Only where they are its own (no pooler in between) and the
// role may; a failure is logged, since the lease is already safe.
func (s *session) endBackendsOf(ctx context.Context, instance string) {
	r := s.r
	s.ended = instance
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	backends, direct, err := sqlkit.InstanceBackends(ctx, s.worker, r.cfg.Name, instance)
	if err == nil && direct {
		var n int
		if n, err = sqlkit.TerminateBackends(ctx, s.worker, backends); n > 0 {
			r.log.Info("ended the backends of the relay that held the lease before", "instance", instance, "backends", n)
		}
	}
	if err != nil {
		r.log.Warn("could not end the backends of the relay that held the lease before", "instance", instance, "err", err)
	}
}

// endOwnZombies ends the backends of this relay's earlier sessions that may
// still run: after a partition the server may not have noticed that they
// were abandoned. Not behind a pooler, whose server connections are shared.
func (s *session) endOwnZombies(ctx context.Context) {
	r := s.r
	zombies := r.zombies
	r.zombies = nil
	if len(zombies) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	n, err := sqlkit.TerminateBackends(ctx, s.worker, zombies)
	if err != nil {
		r.log.Warn("could not end the backends of this relay's lost connections", "err", err)
		return
	}
	if n > 0 {
		r.log.Info("ended the backends of this relay's lost connections", "backends", n)
	}
}

// release gives the lease up and unregisters, when the relay stops, so that
// a standby need not wait for the lease to expire.
func (s *session) release() {
	r := s.r
	lease, held, _ := r.lease.get()
	if !held {
		lease = sqlkit.Lease{Name: r.cfg.Name}
	}
	r.lease.drop()
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
	defer cancel()
	if err := sqlkit.ReleaseLease(ctx, s.worker, r.instance, lease); err != nil {
		r.log.Warn("could not give up the lease; a standby takes over once it expires", "err", err)
	}
}
