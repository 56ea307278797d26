package metrics

import (
	"context"
	"time"

	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// MinBacklogReadTimeout is the least time RunBacklog gives one status
// read, whatever its interval: a short interval on a busy database would
// otherwise time every read out and leave the gauges stale for good.
const MinBacklogReadTimeout = 5 * time.Second

// RunBacklog refreshes the backlog gauges from relay.ReadStatusWith every
// interval (the relay's watchdog interval, say) until ctx ends. Each read
// may take the interval or MinBacklogReadTimeout, whichever is longer. db
// should be a pool of its own, not the relay's connections. A failing
// query makes /readyz say so until one succeeds.
func (m *Metrics) RunBacklog(ctx context.Context, db sqlkit.DB, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	timeout := max(interval, MinBacklogReadTimeout)
	for {
		qctx, cancel := context.WithTimeout(ctx, timeout)
		// Without the count of retained events, which reads the whole
		// outbox: the gauges do not report it.
		st, err := relay.ReadStatusWith(qctx, db, m.cfg.Name, relay.StatusOptions{SkipRetained: true})
		cancel()
		if ctx.Err() != nil {
			return
		}
		m.health.setStatusErr(err)
		if err == nil {
			m.SetBacklog(st)
			if m.onStatus != nil {
				m.onStatus(st)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
