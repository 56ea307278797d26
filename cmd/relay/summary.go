package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/pgrelay/pgrelay/relay"
)

// summary logs, instead of a line per event, one line per interval: how
// many events were delivered and how fast, the backlog, and the lag from a
// row's change to its delivery. It also signals each batch (for --drain).
type summary struct {
	log      *slog.Logger
	interval time.Duration
	// batches gets a value, without blocking, after each batch.
	batches chan struct{}

	mu               sync.Mutex
	events           int64
	lagSum, lagMax   time.Duration
	pending          int64
	oldestPendingAge float64
}

func newSummary(log *slog.Logger, interval time.Duration) *summary {
	return &summary{log: log, interval: interval, batches: make(chan struct{}, 1)}
}

// observe counts a batch's events and their lag.
func (s *summary) observe(a relay.Activity) {
	if a.Kind != relay.ActivityBatch {
		return
	}
	s.mu.Lock()
	for i := range a.Events {
		lag := a.At.Sub(a.Events[i].Timestamp)
		s.lagSum += lag
		s.lagMax = max(s.lagMax, lag)
	}
	s.events += int64(len(a.Events))
	s.mu.Unlock()
	select {
	case s.batches <- struct{}{}:
	default:
	}
}

// setStatus records the latest backlog figures.
func (s *summary) setStatus(st relay.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = st.Pending
	s.oldestPendingAge = 0
	if st.OldestPending != nil {
		s.oldestPendingAge = st.OldestPendingAge
	}
}

// run logs a summary every interval with something to say, until ctx ends.
func (s *summary) run(ctx context.Context) {
	if s.interval <= 0 {
		return
	}
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		events, lagSum, lagMax, pending, age := s.events, s.lagSum, s.lagMax, s.pending, s.oldestPendingAge
		s.events, s.lagSum, s.lagMax = 0, 0, 0
		s.mu.Unlock()
		if events == 0 && pending == 0 {
			continue
		}
		attrs := []any{"events", events, "events_per_s", float64(events) / s.interval.Seconds(),
			"backlog", pending, "oldest_pending_age", time.Duration(age * float64(time.Second)).Round(time.Millisecond)}
		if events > 0 {
			attrs = append(attrs, "lag_avg", (lagSum / time.Duration(events)).Round(time.Microsecond),
				"lag_max", lagMax.Round(time.Microsecond))
		}
		s.log.Info("delivery summary", attrs...)
	}
}
