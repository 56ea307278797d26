package main

import (
	"context"
	"fmt"
	"time"
)

// memoryTarget is the relay's peak RSS budget, in MiB.
const memoryTarget = 64

// flatFactor is how much larger the peak RSS for the largest backlog may be
// than for the smallest and still count as flat.
const flatFactor = 1.25

// settle is how long the relay is left running after it delivered
// everything before its peak RSS is read, so that work it does on becoming
// idle (pruning) is included.
const settle = 300 * time.Millisecond

// runMemory measures the relay binary's peak RSS and drain time for
// backlogs of two sizes.
func runMemory(ctx context.Context, e *env, sec *Section) error {
	sizes := e.cfg.memSizes
	sec.About = fmt.Sprintf("`relay run` (the binary built from `./cmd/relay`, default flags, `--log-level warn`) is "+
		"started as a subprocess on a backlog of %s and then of %s events and left running until the subscriber has "+
		"received them all; its peak RSS is `VmHWM` from `/proc/<pid>/status`, read just before SIGTERM. Drain time "+
		"runs from starting the process, so it includes start-up and connecting. %s per size.",
		thousands(sizes[0]), thousands(sizes[len(sizes)-1]), plural(e.cfg.memRounds, "round"))
	medians := make([]float64, 0, len(sizes))
	for _, n := range sizes {
		if err := e.reset(ctx); err != nil {
			return err
		}
		if _, err := e.writeBacklog(ctx, n); err != nil {
			return err
		}
		var rss, secs, rates []float64
		for round := 1; round <= e.cfg.memRounds; round++ {
			// Later rounds deliver the same backlog again: forgetting the
			// relay's position is enough, and much faster than writing
			// a million rows once more.
			if _, err := e.pool.Exec(ctx, "DELETE FROM cdc.relay_cursor"); err != nil {
				return err
			}
			r, d, err := drainProcess(ctx, e, n, func(ctx context.Context) (receiver, error) {
				return e.subscribe(ctx, e.channel())
			})
			if err != nil {
				return err
			}
			rss, secs, rates = append(rss, r), append(secs, d.Seconds()), append(rates, rate(n, d))
			e.progress("memory %s events round %d/%d: peak RSS %s MiB, drained in %.2fs (%s events/s)",
				thousands(n), round, e.cfg.memRounds, MiB.format(r), d.Seconds(), PerSecond.format(rate(n, d)))
		}
		label := thousands(n) + " events"
		sec.add(label+": peak RSS, MiB", MiB, rss).Target = &Target{AtMost: true, Value: memoryTarget}
		sec.add(label+": drain time, s", Seconds, secs)
		sec.add(label+": drain rate, events/s", PerSecond, rates)
		medians = append(medians, median(rss))
	}
	growth := medians[len(medians)-1] / medians[0]
	sec.Verdict = &Verdict{
		Target: fmt.Sprintf("peak RSS flat in backlog size (the %s-event median at most %.2f× the %s-event median)",
			thousands(sizes[len(sizes)-1]), flatFactor, thousands(sizes[0])),
		Met:    growth <= flatFactor,
		Detail: fmt.Sprintf("Ratio of the medians: %s.", Ratio.format(growth)),
	}
	sec.note("Rounds after the first of each size re-deliver the same backlog after `DELETE FROM cdc.relay_cursor`, " +
		"so their outbox pages were already read once (hint bits set, cached).")
	return nil
}

// drainProcess subscribes with subscribe, starts the relay binary, waits
// until the subscriber has n events, and returns the relay's peak RSS and
// the time from starting it.
func drainProcess(ctx context.Context, e *env, n int64, subscribe func(context.Context) (receiver, error)) (float64, time.Duration, error) {
	sub, err := subscribe(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer sub.close()
	start := time.Now()
	proc, err := e.startRelayProcess(e.dbURL)
	if err != nil {
		return 0, 0, err
	}
	defer proc.stop()
	at, err := sub.wait(ctx, n, drainTimeout(n))
	if err != nil {
		return 0, 0, err
	}
	if err := sleepCtx(ctx, settle); err != nil {
		return 0, 0, err
	}
	rss, err := proc.peakRSS()
	if err != nil {
		return 0, 0, err
	}
	return rss, at.Sub(start), nil
}

// runLargeTx measures delivery of one transaction of many rows by the relay
// binary, and its peak RSS meanwhile.
func runLargeTx(ctx context.Context, e *env, sec *Section) error {
	n := e.cfg.largeTxRows
	sec.About = fmt.Sprintf("With `relay run` running as a subprocess (as in the memory measurement) and idle, one "+
		"transaction inserts %s rows into `cdc` in a single `INSERT … SELECT`; timed from the COMMIT returning until the "+
		"subscriber has received every event. A fresh relay process per round; %s.", thousands(n), plural(e.cfg.largeTxRounds, "round"))
	var insert, commit, deliver, rates, rss []float64
	for round := 1; round <= e.cfg.largeTxRounds; round++ {
		r, err := largeTxOnce(ctx, e, n)
		if err != nil {
			return err
		}
		insert, commit = append(insert, r.insert.Seconds()), append(commit, ms(r.commit))
		deliver, rates = append(deliver, r.deliver.Seconds()), append(rates, rate(n, r.deliver))
		rss = append(rss, r.rss)
		e.progress("large-tx round %d/%d: insert %.2fs, commit %s ms, delivered %.2fs after commit (%s events/s), peak RSS %s MiB",
			round, e.cfg.largeTxRounds, r.insert.Seconds(), Millis.format(ms(r.commit)), r.deliver.Seconds(),
			PerSecond.format(rate(n, r.deliver)), MiB.format(r.rss))
	}
	sec.add("INSERT statement (writer), s", Seconds, insert)
	sec.add("COMMIT, ms", Millis, commit)
	sec.add("COMMIT → subscriber has all, s", Seconds, deliver)
	sec.add("delivery rate after COMMIT, events/s", PerSecond, rates)
	sec.add("relay peak RSS, MiB", MiB, rss).Target = &Target{AtMost: true, Value: memoryTarget}
	sec.note("The relay reads one transaction's rows in batches of 1,000 (the default batch size), resuming inside the " +
		"transaction after the last id delivered.")
	return nil
}

type largeTxResult struct {
	insert, commit, deliver time.Duration
	rss                     float64
}

func largeTxOnce(ctx context.Context, e *env, n int64) (largeTxResult, error) {
	var res largeTxResult
	if err := e.reset(ctx); err != nil {
		return res, err
	}
	sub, err := e.subscribe(ctx, e.channel())
	if err != nil {
		return res, err
	}
	defer sub.close()
	proc, err := e.startRelayProcess(e.dbURL)
	if err != nil {
		return res, err
	}
	defer proc.stop()
	conn, err := e.connect(ctx)
	if err != nil {
		return res, err
	}
	defer conn.Close(context.WithoutCancel(ctx))

	// One event through the whole path first: once it arrives the relay is
	// connected, listening and idle, so the clock below times delivery,
	// not start-up.
	if _, err := conn.Exec(ctx, e.insertOneSQL("cdc"), e.nextID.Add(1)); err != nil {
		return res, err
	}
	if _, err := sub.wait(ctx, 1, 30*time.Second); err != nil {
		return res, fmt.Errorf("relay did not deliver the first event: %w", err)
	}

	tx, err := conn.Begin(ctx)
	if err != nil {
		return res, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	first := e.nextID.Add(n) - n + 1
	t0 := time.Now()
	if _, err := tx.Exec(ctx, e.insertSeriesSQL("cdc"), first, first+n-1); err != nil {
		return res, err
	}
	t1 := time.Now()
	if err := tx.Commit(ctx); err != nil {
		return res, err
	}
	t2 := time.Now()
	at, err := sub.wait(ctx, 1+n, drainTimeout(n))
	if err != nil {
		return res, err
	}
	if err := sleepCtx(ctx, settle); err != nil {
		return res, err
	}
	if res.rss, err = proc.peakRSS(); err != nil {
		return res, err
	}
	res.insert, res.commit, res.deliver = t1.Sub(t0), t2.Sub(t1), at.Sub(t2)
	return res, nil
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
