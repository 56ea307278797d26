package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// bigEvery makes every bigEvery-th statement of a sustained-load writer a
// 100-row INSERT; the others insert one row.
const bigEvery = 10

// bigRows is the size of the sustained load's multi-row INSERTs.
const bigRows = 100

// runSustained drives writers as fast as they go against a running relay and
// samples whether the undelivered backlog grows.
func runSustained(ctx context.Context, e *env, sec *Section) error {
	clients, d, every := e.cfg.clients, e.cfg.sustainDuration, e.cfg.sampleEvery
	sec.About = fmt.Sprintf("An in-process relay runs with Redis while %d writers, each on its own connection, commit as "+
		"fast as they can for %s: every %dth statement a %d-row INSERT, the others one-row INSERTs (autocommit). Every %s "+
		"while the writers run the backlog is sampled as events committed (counted by the writers after each COMMIT) "+
		"minus events received by the subscriber; a sample due when the writers stop is not taken, as the backlog then "+
		"only shrinks. Rates are per sampling interval.", clients, secs(d), bigEvery, bigRows, secs(every))
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
	conns, err := e.connectN(ctx, clients)
	if err != nil {
		return err
	}
	defer closeAll(conns)

	one, many := e.insertOneSQL("cdc"), e.insertSeriesSQL("cdc")
	var committed, stmts atomic.Int64
	done := make(chan error, 1)
	// The writers start no statement once d has passed since they began,
	// which is after this deadline: a sample finished before it was taken
	// while they ran.
	deadline := time.Now().Add(d)
	go func() {
		_, _, err := hammer(ctx, conns, d, func(ctx context.Context, c *pgx.Conn, _ *rand.Rand) error {
			if stmts.Add(1)%bigEvery == 0 {
				first := e.nextID.Add(bigRows) - bigRows + 1
				if _, err := c.Exec(ctx, many, first, first+bigRows-1); err != nil {
					return err
				}
				committed.Add(bigRows)
				return nil
			}
			if _, err := c.Exec(ctx, one, e.nextID.Add(1)); err != nil {
				return err
			}
			committed.Add(1)
			return nil
		})
		done <- err
	}()

	type sample struct {
		at                  time.Duration
		committed, received int64
		// pending is the relay's own view of its backlog, computed as
		// `relay status` does from its saved cursor.
		pending int64
	}
	start := time.Now()
	samples := []sample{}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var writeErr error
loop:
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case writeErr = <-done:
			break loop
		case <-tick.C:
			s := sample{at: time.Since(start), committed: committed.Load(), received: sub.count.Load()}
			if s.pending, err = e.pending(ctx); err != nil {
				return err
			}
			if !time.Now().Before(deadline) {
				// The writers are stopping or have stopped.
				continue
			}
			samples = append(samples, s)
			e.progress("sustained %3.0fs: committed %s, received %s, backlog %s, undelivered per relay status %s",
				s.at.Seconds(), thousands(s.committed), thousands(s.received), thousands(s.committed-s.received),
				thousands(s.pending))
		}
	}
	if writeErr != nil {
		return fmt.Errorf("writers: %w", writeErr)
	}
	stopped := time.Now()
	total := committed.Load()
	backlogAtStop := total - sub.count.Load()
	if _, err := sub.wait(ctx, total, drainTimeout(total)); err != nil {
		return fmt.Errorf("catching up after the writers stopped: %w", err)
	}
	catchUp := time.Since(stopped)
	if len(samples) < 2 {
		return fmt.Errorf("only %d backlog samples: the run was too short", len(samples))
	}

	var wrote, got, backlog []float64
	prev := sample{}
	rows := make([][]string, 0, len(samples))
	for _, s := range samples {
		span := s.at - prev.at
		wrote = append(wrote, rate(s.committed-prev.committed, span))
		got = append(got, rate(s.received-prev.received, span))
		b := s.committed - s.received
		backlog = append(backlog, float64(b))
		rows = append(rows, []string{
			strconv.FormatFloat(s.at.Seconds(), 'f', 0, 64), thousands(s.committed), thousands(s.received), thousands(b),
			thousands(s.pending),
		})
		prev = s
	}
	sec.add("events committed per second", PerSecond, wrote)
	sec.add("events received per second", PerSecond, got)
	sec.add("backlog at the samples, events", Count, backlog)
	sec.add("catch-up after the writers stopped, s", Seconds, []float64{catchUp.Seconds()})
	sec.Tables = append(sec.Tables, Table{
		Caption: "Backlog samples:",
		Header:  []string{"t (s)", "committed", "received", "backlog", "undelivered (relay status)"},
		Rows:    rows,
	})

	// "Does not grow": the last sample is no larger than the largest of the
	// first few, which absorb the start-up transient, give or take one
	// batch: a backlog below one batch is events in flight, not a queue.
	head := backlog[:min(3, len(backlog)-1)]
	_, headMax := minMax(head)
	last := backlog[len(backlog)-1]
	sec.Verdict = &Verdict{
		Target: fmt.Sprintf("the backlog does not grow (last sample ≤ the largest of the first three, or of all but the last in a shorter run, + %s events, one batch)",
			thousands(relay.DefaultBatchSize)),
		Met: last <= headMax+relay.DefaultBatchSize,
		Detail: fmt.Sprintf("Last sample (at %.0f s, while the writers ran) %s, largest of the first %s %s; %s events "+
			"were undelivered when the writers stopped, and arrived %.2fs later.", samples[len(samples)-1].at.Seconds(),
			thousands(int64(last)), plural(len(head), "sample"), thousands(int64(headMax)), thousands(backlogAtStop),
			catchUp.Seconds()),
	}
	sec.note("The backlog is measured from the outside (committed minus received), so it includes events in flight in " +
		"Redis and the subscriber, not only those waiting in the outbox; it is negative when events reach the " +
		"subscriber before their writer has counted its COMMIT as returned. The last column is the relay's own count, " +
		"from its saved cursor as `relay status` computes it; the cursor is saved after each batch, so it lags by " +
		"up to one batch.")
	return nil
}

// pending returns how many events the default relay has not delivered yet,
// by its saved cursor, as `relay status` reports it.
func (e *env) pending(ctx context.Context) (int64, error) {
	cur, err := sqlkit.LoadCursor(ctx, e.pool, relay.DefaultName)
	if err != nil {
		return 0, err
	}
	n, _, err := sqlkit.Backlog(ctx, e.pool, cur)
	return n, err
}
