package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// waitSampleEvery is how often the writers' wait events are sampled: often
// enough for a few hundred samples per round, rarely enough that the
// sampler's own queries do not matter.
const waitSampleEvery = 10 * time.Millisecond

// waitSampler records what the suite's client backends are doing, from
// pg_stat_activity: a wait event ("Lock/object", "IO/WALSync", …) or "CPU"
// when an active backend waits for nothing. Where the writers spend their
// time explains a throughput figure better than the figure alone.
type waitSampler struct {
	counts map[string]int
	total  int
	stop   chan struct{}
	done   chan error
}

// sampleWaits starts sampling on a connection of its own until stopped.
func (e *env) sampleWaits(ctx context.Context) (*waitSampler, error) {
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		return nil, err
	}
	w := &waitSampler{counts: map[string]int{}, stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		defer conn.Close(context.WithoutCancel(ctx))
		t := time.NewTicker(waitSampleEvery)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				w.done <- nil
				return
			case <-ctx.Done():
				w.done <- ctx.Err()
				return
			case <-t.C:
			}
			rows, err := conn.Query(ctx, `
				SELECT coalesce(wait_event_type || '/' || wait_event, 'CPU')
				FROM pg_stat_activity
				WHERE datname = current_database() AND application_name = $1
				  AND state = 'active' AND pid <> pg_backend_pid()`, clientApp)
			if err != nil {
				w.done <- err
				return
			}
			events, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				w.done <- err
				return
			}
			for _, ev := range events {
				w.counts[ev]++
				w.total++
			}
		}
	}()
	return w, nil
}

// finish stops sampling and returns the counts.
func (w *waitSampler) finish() (map[string]int, int, error) {
	close(w.stop)
	err := <-w.done
	return w.counts, w.total, err
}

// waitTable compares two sides' wait-event shares, the events that were
// most frequent on either side first.
func waitTable(caption string, names []string, counts []map[string]int, totals []int) Table {
	seen := map[string]bool{}
	var events []string
	for _, c := range counts {
		for ev := range c {
			if !seen[ev] {
				seen[ev] = true
				events = append(events, ev)
			}
		}
	}
	share := func(i int, ev string) float64 {
		if totals[i] == 0 {
			return 0
		}
		return float64(counts[i][ev]) / float64(totals[i])
	}
	top := func(ev string) float64 {
		m := 0.0
		for i := range counts {
			m = max(m, share(i, ev))
		}
		return m
	}
	slices.SortFunc(events, func(a, b string) int { return cmp.Compare(top(b), top(a)) })
	t := Table{Caption: caption, Header: append([]string{"wait event"}, names...)}
	for _, ev := range events {
		if top(ev) < 0.01 {
			continue // below 1% everywhere: noise
		}
		row := []string{"`" + ev + "`"}
		for i := range counts {
			row = append(row, strconv.FormatFloat(100*share(i, ev), 'f', 0, 64)+"%")
		}
		t.Rows = append(t.Rows, row)
	}
	row := []string{"samples"}
	for _, n := range totals {
		row = append(row, fmt.Sprint(n))
	}
	t.Rows = append(t.Rows, row)
	return t
}
