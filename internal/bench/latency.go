package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// pacedResult is what a paced writer achieved.
type pacedResult struct {
	committed int64
	elapsed   time.Duration
	// commits are the writers' round trips, INSERT and COMMIT together,
	// sorted: the part of the end-to-end latency spent before the relay
	// can see the row.
	commits []time.Duration
}

// paced commits INSERTs of rows rows each into cdc at perSec rows per
// second for d, spread over conns: slot i (one INSERT) is due at start +
// i*rows/perSec and is written by connection
// i mod len(conns). The schedule is absolute, not a ticker, so a connection
// that falls behind writes its late slots back to back instead of silently
// dropping them, and the average rate holds as long as the database keeps
// up. Writing stops at d in any case: when the database cannot keep up, the
// round still lasts d and the rate achieved is lower.
func paced(ctx context.Context, e *env, conns []*pgx.Conn, perSec float64, rows int, d time.Duration) (pacedResult, error) {
	q, args := e.insertSeriesSQL("cdc"), func(last int64) []any { return []any{last - int64(rows) + 1, last} }
	if rows == 1 {
		q, args = e.insertOneSQL("cdc"), func(last int64) []any { return []any{last} }
	}
	interval := time.Duration(float64(time.Second) * float64(rows) / perSec)
	slots := int64(d / interval)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		errOnce  sync.Once
		firstErr error
		res      pacedResult
	)
	// Start a moment ahead so that every goroutine is ready for slot 0.
	start := time.Now().Add(2 * time.Millisecond)
	end := start.Add(d)
	for g, c := range conns {
		wg.Go(func() {
			rtts := make([]time.Duration, 0, slots/int64(len(conns))+1)
			defer func() {
				mu.Lock()
				res.commits = append(res.commits, rtts...)
				mu.Unlock()
			}()
			for i := int64(g); i < slots && ctx.Err() == nil; i += int64(len(conns)) {
				if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
					time.Sleep(wait)
				} else if !time.Now().Before(end) {
					return
				}
				t0 := time.Now()
				if _, err := c.Exec(ctx, q, args(e.nextID.Add(int64(rows)))...); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				rtts = append(rtts, time.Since(t0))
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	res.committed = int64(len(res.commits)) * int64(rows)
	res.elapsed = time.Since(start)
	slices.Sort(res.commits)
	return res, firstErr
}

// fastRows is how many rows each commit of the 10,000/s phase writes.
const fastRows = 4

// latencyRound is one round's latency distribution.
type latencyRound struct {
	p50, p90, p99, max float64 // end to end, milliseconds
	commit50, commit99 float64 // the writers' INSERT+COMMIT round trips, milliseconds
	achieved           float64 // rows/s actually committed
	samples            int
}

// measureLatency runs one paced round with the subscriber recording, and
// waits until every event of the round has arrived.
func measureLatency(ctx context.Context, e *env, sub *subscriber, conns []*pgx.Conn, perSec float64, rows int, d time.Duration) (latencyRound, error) {
	before := sub.count.Load()
	sub.startRecording()
	w, err := paced(ctx, e, conns, perSec, rows, d)
	if err != nil {
		sub.takeSamples()
		return latencyRound{}, err
	}
	if _, err := sub.wait(ctx, before+w.committed, 60*time.Second); err != nil {
		sub.takeSamples()
		return latencyRound{}, err
	}
	s, bad := sub.takeSamples()
	if bad > 0 {
		return latencyRound{}, fmt.Errorf("%d messages had no readable timestamp", bad)
	}
	slices.Sort(s)
	return latencyRound{
		p50:      ms(percentile(s, 0.50)),
		p90:      ms(percentile(s, 0.90)),
		p99:      ms(percentile(s, 0.99)),
		max:      ms(percentile(s, 1)),
		commit50: ms(percentile(w.commits, 0.50)),
		commit99: ms(percentile(w.commits, 0.99)),
		achieved: rate(w.committed, w.elapsed),
		samples:  len(s),
	}, nil
}

// runLatency measures the time from a row change to its arrival at a Redis
// subscriber, at a steady 1,000 and 10,000 changes per second.
func runLatency(ctx context.Context, e *env, sec *Section) error {
	sec.About = fmt.Sprintf("An in-process relay runs with Redis; writers commit INSERTs into `cdc` on an "+
		"absolute schedule (%d connections committing single-row INSERTs at 1,000 rows/s; %d committing %d-row INSERTs "+
		"at 10,000 rows/s, since single-row commits into a CDC table top out below 10,000/s on this machine, see "+
		"`concurrent-insert`); the subscriber takes each message's arrival time "+
		"minus its `timestamp` field (the row's `clock_timestamp()`, same machine and clock). Percentiles are per round; "+
		"%s of %s at 1,000/s and %d of %s at 10,000/s, after a 1 s warm-up that is not recorded.",
		e.cfg.slowConns, e.cfg.fastConns, fastRows, plural(e.cfg.latRounds, "round"), secs(e.cfg.latDuration), e.cfg.fastRounds, secs(e.cfg.fastDuration))
	if err := e.reset(ctx); err != nil {
		return err
	}
	sub, err := e.subscribe(ctx, e.channel())
	if err != nil {
		return err
	}
	defer sub.close()
	p, err := e.newRelay()
	if err != nil {
		return err
	}
	defer p.close()
	if err := p.r.Start(ctx); err != nil {
		return fmt.Errorf("start relay: %w", err)
	}
	conns, err := e.connectN(ctx, max(e.cfg.slowConns, e.cfg.fastConns))
	if err != nil {
		return err
	}
	defer closeAll(conns)

	// Warm-up: the connections' statement caches, the relay's first
	// fetches and the subscriber's buffers, none of it recorded.
	if _, err := measureLatency(ctx, e, sub, conns[:e.cfg.slowConns], 1000, 1, time.Second); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}

	phases := []struct {
		label  string
		perSec float64
		rows   int // per INSERT and commit
		conns  int
		rounds int
		d      time.Duration
		p50    *Target
		p99    *Target
	}{
		{"1,000/s", 1000, 1, e.cfg.slowConns, e.cfg.latRounds, e.cfg.latDuration,
			&Target{AtMost: true, Value: 1}, &Target{AtMost: true, Value: 5}},
		{"10,000/s", 10000, fastRows, e.cfg.fastConns, e.cfg.fastRounds, e.cfg.fastDuration,
			nil, &Target{AtMost: true, Value: 20}},
	}
	for _, ph := range phases {
		var p50, p90, p99, mx, got, c50, c99 []float64
		for round := 1; round <= ph.rounds; round++ {
			r, err := measureLatency(ctx, e, sub, conns[:ph.conns], ph.perSec, ph.rows, ph.d)
			if err != nil {
				return fmt.Errorf("%s: %w", ph.label, err)
			}
			p50, p90, p99, mx = append(p50, r.p50), append(p90, r.p90), append(p99, r.p99), append(mx, r.max)
			got, c50, c99 = append(got, r.achieved), append(c50, r.commit50), append(c99, r.commit99)
			e.progress("latency %s round %d/%d: %s events/s achieved, p50 %s ms, p90 %s ms, p99 %s ms, max %s ms; writer commit p50 %s ms, p99 %s ms",
				ph.label, round, ph.rounds, PerSecond.format(r.achieved), Millis.format(r.p50),
				Millis.format(r.p90), Millis.format(r.p99), Millis.format(r.max),
				Millis.format(r.commit50), Millis.format(r.commit99))
		}
		sec.add(ph.label+": rate achieved, events/s", PerSecond, got)
		sec.add(ph.label+": p50, ms", Millis, p50).Target = ph.p50
		sec.add(ph.label+": p90, ms", Millis, p90)
		sec.add(ph.label+": p99, ms", Millis, p99).Target = ph.p99
		sec.add(ph.label+": max, ms", Millis, mx)
		sec.add(ph.label+": writer INSERT+COMMIT p50, ms", Millis, c50)
		sec.add(ph.label+": writer INSERT+COMMIT p99, ms", Millis, c99)
	}
	sec.note("The end-to-end latency includes the writer's own commit (the timestamp is taken inside the transaction, " +
		"before the WAL flush), the NOTIFY, the relay's fetch and PUBLISH, and Redis delivering to the subscriber; the " +
		"writer rows time each INSERT's round trip, commit included, for comparison.")
	return nil
}
