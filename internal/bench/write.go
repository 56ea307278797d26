package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// hammer runs op in a loop on each connection, each in its own goroutine,
// until d has passed, and returns how many ops succeeded in all and how long
// that took (until the last op in flight finished).
func hammer(ctx context.Context, conns []*pgx.Conn, d time.Duration,
	op func(ctx context.Context, c *pgx.Conn, rng *rand.Rand) error,
) (int64, time.Duration, error) {
	var (
		total    atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	start := time.Now()
	for i, c := range conns {
		rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), uint64(i)))
		wg.Go(func() {
			for time.Since(start) < d && ctx.Err() == nil {
				if err := op(ctx, c, rng); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				total.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return total.Load(), time.Since(start), firstErr
}

// addSides reports one quantity on every side, prefix naming it (empty for
// a section's main quantity) and unit its unit, and the ratios of the cdc
// sides to plain from the paired rounds, each with target when it is set.
func addSides(sec *Section, prefix, unit string, res map[string][]float64, target *Target) {
	for _, s := range writeSides {
		sec.add(prefix+s.name+", "+unit, PerSecond, res[s.name])
	}
	for _, s := range writeSides[1:] {
		f := sec.add(prefix+s.name+" ÷ plain", Ratio, ratios(res[s.name], res["plain"]))
		if target != nil {
			t := *target
			f.Target = &t
		}
	}
}

// sidesAbout describes the three sides for a write section's About.
const sidesAbout = "Three sides, run in turn in every round, each on emptied tables: `plain` (no CDC); `cdc` (the " +
	"same schema with CDC triggers, no relay running); `cdc+relay` (CDC, and `relay run`, the binary, delivering to " +
	"Redis meanwhile, with a subscriber in the suite's process reading every event; the relay has delivered one " +
	"probe event before the timed writes begin, so it is connected, caught up and waiting for notifications, and the " +
	"round ends when the subscriber has every event)."

// deliveredAfter names the relay side's delivery lag figure.
const deliveredAfter = "cdc+relay: every event received, ms after the last COMMIT returned"

// runBulkInsert measures rows/s of 1,000-row INSERT ... SELECT statements
// on the three sides.
func runBulkInsert(ctx context.Context, e *env, sec *Section) error {
	stmts := e.cfg.bulkStatements
	n := int64(stmts) * rowsPerStatement
	sec.About = fmt.Sprintf("Rows per second of %d autocommitted `INSERT … SELECT generate_series` statements of "+
		"%s rows each (%s rows), on one connection. %s %s.",
		stmts, thousands(rowsPerStatement), thousands(n), sidesAbout, plural(e.cfg.bulkRounds, "round"))
	conn, err := e.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	db := e.mainDB()
	res := map[string][]float64{}
	var lags []float64
	for round := 1; round <= e.cfg.bulkRounds; round++ {
		for _, s := range writeSides {
			if err := e.reset(ctx); err != nil {
				return err
			}
			var d time.Duration
			lag, err := db.onSide(ctx, e, s, func() (int64, time.Time, error) {
				var err error
				d, err = e.insertRange(ctx, conn, s.table(), 1, n, rowsPerStatement)
				return n, time.Now(), err
			})
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			res[s.name] = append(res[s.name], rate(n, d))
			if s.relay {
				lags = append(lags, ms(lag))
			}
			e.progress("bulk-insert round %d/%d %-9s %s rows/s", round, e.cfg.bulkRounds, s.name, PerSecond.format(rate(n, d)))
		}
	}
	addSides(sec, "", "rows/s", res, &Target{Value: 0.5})
	sec.add(deliveredAfter, Millis, lags)
	sec.note("Each cdc statement also writes its %s rows to `cdc.outbox` as one chunk (`json_agg` of the rows); with "+
		"a relay waiting, a transaction also notifies it.", thousands(rowsPerStatement))
	return nil
}

// runConcurrentInsert measures commits/s of single-row autocommitted
// INSERTs from several clients at once, on the three sides.
func runConcurrentInsert(ctx context.Context, e *env, sec *Section) error {
	clients, d := e.cfg.clients, e.cfg.concDuration
	sec.About = fmt.Sprintf("Total commits per second of %d clients, each on its own connection, committing one-row "+
		"INSERTs (autocommit) as fast as they can for %s. %s %s.",
		clients, secs(d), sidesAbout, plural(e.cfg.concRounds, "round"))
	conns, err := e.connectN(ctx, clients)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	db := e.mainDB()
	res := map[string][]float64{}
	waits := map[string]map[string]int{}
	samples := map[string]int{}
	var lags []float64
	for round := 1; round <= e.cfg.concRounds; round++ {
		for _, s := range writeSides {
			if err := e.reset(ctx); err != nil {
				return err
			}
			q := e.insertOneSQL(s.table())
			var (
				next    atomic.Int64
				n       int64
				elapsed time.Duration
				counts  map[string]int
				total   int
			)
			lag, err := db.onSide(ctx, e, s, func() (int64, time.Time, error) {
				sampler, err := e.sampleWaits(ctx)
				if err != nil {
					return 0, time.Time{}, err
				}
				n, elapsed, err = hammer(ctx, conns, d, func(ctx context.Context, c *pgx.Conn, _ *rand.Rand) error {
					_, err := c.Exec(ctx, q, next.Add(1))
					return err
				})
				end := time.Now()
				var serr error
				counts, total, serr = sampler.finish()
				if err != nil {
					return 0, end, fmt.Errorf("insert into %s: %w", s.table(), err)
				}
				if serr != nil {
					return 0, end, fmt.Errorf("sample wait events: %w", serr)
				}
				return n, end, nil
			})
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			if waits[s.name] == nil {
				waits[s.name] = map[string]int{}
			}
			for ev, c := range counts {
				waits[s.name][ev] += c
			}
			samples[s.name] += total
			res[s.name] = append(res[s.name], rate(n, elapsed))
			if s.relay {
				lags = append(lags, ms(lag))
			}
			e.progress("concurrent-insert round %d/%d %-9s %s commits/s", round, e.cfg.concRounds, s.name, PerSecond.format(rate(n, elapsed)))
		}
	}
	addSides(sec, "", "commits/s", res, &Target{Value: 0.7})
	sec.add(deliveredAfter, Millis, lags)
	names := make([]string, len(writeSides))
	counts := make([]map[string]int, len(writeSides))
	totals := make([]int, len(writeSides))
	for i, s := range writeSides {
		names[i], counts[i], totals[i] = s.name, waits[s.name], samples[s.name]
	}
	sec.Tables = append(sec.Tables, waitTable(
		fmt.Sprintf("What the writers' backends were doing, sampled from `pg_stat_activity` every %s during the rounds "+
			"(share of samples of active backends; `CPU` = active, not waiting):", waitSampleEvery),
		names, counts, totals))
	sec.note("With `synchronous_commit = on` every commit waits for a WAL flush, which group commit shares between " +
		"concurrent clients. A transaction that has queued a NOTIFY holds PostgreSQL's database-wide notification " +
		"lock (`Lock/object` on `pg_database`) from just before its commit until the commit is flushed, so notifying " +
		"commits flush one at a time; the trigger notifies only while a relay waits, which only the cdc+relay side has.")
	return nil
}

// runUpdateDelete measures UPDATE and DELETE, in bulk and as concurrent
// single-row updates, on the three sides.
func runUpdateDelete(ctx context.Context, e *env, sec *Section) error {
	n := e.cfg.updRows
	clients, d := e.cfg.clients, e.cfg.concDuration
	sec.About = fmt.Sprintf("Each round and side loads %s rows (not timed, no relay running, the load's events then "+
		"removed from the outbox), then times, in order: a bulk UPDATE of every row in "+
		"autocommitted 1,000-row statements by id range (`score = score + 1`, `name = name || '.'`); %d clients on their "+
		"own connections updating random existing rows one per commit for %s; a bulk DELETE of every row in 1,000-row "+
		"statements. %s %s.", thousands(n), clients, secs(d), sidesAbout, plural(e.cfg.updRounds, "round"))
	conn, err := e.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	conns, err := e.connectN(ctx, clients)
	if err != nil {
		return err
	}
	defer closeAll(conns)

	db := e.mainDB()
	upd, del, one := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	var lags []float64
	for round := 1; round <= e.cfg.updRounds; round++ {
		for _, s := range writeSides {
			t := s.table()
			if err := e.reset(ctx); err != nil {
				return err
			}
			if _, err := e.insertRange(ctx, conn, t, 1, n, rowsPerStatement); err != nil {
				return err
			}
			// The load's own events are not part of what is measured.
			if _, err := e.pool.Exec(ctx, "TRUNCATE cdc.outbox"); err != nil {
				return err
			}
			bulk := func(q string) (float64, error) {
				start := time.Now()
				for lo := int64(1); lo <= n; lo += rowsPerStatement {
					if _, err := conn.Exec(ctx, q, lo, lo+rowsPerStatement-1); err != nil {
						return 0, fmt.Errorf("%s: %w", t, err)
					}
				}
				return rate(n, time.Since(start)), nil
			}
			lag, err := db.onSide(ctx, e, s, func() (int64, time.Time, error) {
				r, err := bulk("UPDATE " + e.table(t) + " SET score = score + 1, name = name || '.' WHERE id BETWEEN $1 AND $2")
				if err != nil {
					return 0, time.Time{}, err
				}
				upd[s.name] = append(upd[s.name], r)

				q := "UPDATE " + e.table(t) + " SET score = score + 1 WHERE id = $1"
				ops, elapsed, err := hammer(ctx, conns, d, func(ctx context.Context, c *pgx.Conn, rng *rand.Rand) error {
					_, err := c.Exec(ctx, q, 1+rng.Int64N(n))
					return err
				})
				if err != nil {
					return 0, time.Time{}, fmt.Errorf("update %s: %w", t, err)
				}
				one[s.name] = append(one[s.name], rate(ops, elapsed))

				r, err = bulk("DELETE FROM " + e.table(t) + " WHERE id BETWEEN $1 AND $2")
				if err != nil {
					return 0, time.Time{}, err
				}
				del[s.name] = append(del[s.name], r)
				// Every statement changes every row it touches: one
				// event per row updated or deleted.
				return n + ops + n, time.Now(), nil
			})
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			if s.relay {
				lags = append(lags, ms(lag))
			}
			e.progress("update-delete round %d/%d %-9s update %s rows/s, single-row update %s commits/s, delete %s rows/s",
				round, e.cfg.updRounds, s.name, PerSecond.format(upd[s.name][len(upd[s.name])-1]),
				PerSecond.format(one[s.name][len(one[s.name])-1]), PerSecond.format(del[s.name][len(del[s.name])-1]))
		}
	}
	addSides(sec, "bulk UPDATE, ", "rows/s", upd, nil)
	addSides(sec, "single-row UPDATE, ", "commits/s", one, nil)
	addSides(sec, "bulk DELETE, ", "rows/s", del, nil)
	sec.add(deliveredAfter+" (the bulk DELETE's)", Millis, lags)
	sec.note("No targets: reported for information. An UPDATE's trigger writes the old and the new rows as one chunk " +
		"(the relay pairs them and computes the changed columns); a DELETE's writes the old rows as one chunk.")
	return nil
}
