package relay

import (
	"context"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// wait enters (on) or leaves (off) the waiting state of sqlkit.EnterWaiting.
func (s *session) wait(ctx context.Context, on bool) error {
	ctx, cancel := context.WithTimeout(ctx, s.r.cfg.Timeout)
	defer cancel()
	if on {
		if err := sqlkit.EnterWaiting(ctx, s.worker); err != nil {
			return err
		}
	} else if err := sqlkit.LeaveWaiting(ctx, s.worker); err != nil {
		return err
	}
	s.r.waiting = on
	return nil
}

// resetWaiting starts a session not waiting: it undoes the previous
// session's EnterWaiting, and clears those of relays that went away without
// undoing theirs when this one is alone.
func (s *session) resetWaiting(ctx context.Context) error {
	if s.r.waiting {
		if err := s.wait(ctx, false); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.r.cfg.Timeout)
	defer cancel()
	lease, _, _ := s.r.lease.get()
	return sqlkit.ResetWaiting(ctx, s.worker, lease)
}

// leaveWaiting undoes EnterWaiting when the session ends, if the connection
// still works and the lease is still valid; otherwise the next session does,
// or forgets it (see acquire).
func (s *session) leaveWaiting() {
	if s.r.waiting && s.r.lease.valid() {
		_ = s.wait(context.Background(), false)
	}
}

func (s *session) writersInFlight(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.r.cfg.Timeout)
	defer cancel()
	return sqlkit.WritersInFlight(ctx, s.worker)
}
