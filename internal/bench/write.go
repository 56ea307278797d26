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

// The two sides of every write comparison: the same schema, without and
// with CDC.
var writeTables = []string{"plain", "cdc"}

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

// runBulkInsert measures rows/s of 1,000-row INSERT ... SELECT statements,
// plain against cdc.
func runBulkInsert(ctx context.Context, e *env, sec *Section) error {
	stmts := e.cfg.bulkStatements
	n := int64(stmts) * rowsPerStatement
	sec.About = fmt.Sprintf("Rows per second of %d autocommitted `INSERT … SELECT generate_series` statements of "+
		"%s rows each (%s rows), on one connection, into `plain` and into `cdc` (identical schema, CDC triggers "+
		"on `cdc` only); %s, alternating plain and cdc, each round on emptied tables.",
		stmts, thousands(rowsPerStatement), thousands(n), plural(e.cfg.bulkRounds, "round"))
	conn, err := e.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	res := map[string][]float64{}
	for round := 1; round <= e.cfg.bulkRounds; round++ {
		for _, t := range writeTables {
			if err := e.reset(ctx); err != nil {
				return err
			}
			d, err := e.insertRange(ctx, conn, t, 1, n, rowsPerStatement)
			if err != nil {
				return err
			}
			res[t] = append(res[t], rate(n, d))
			e.progress("bulk-insert round %d/%d %-5s %s rows/s", round, e.cfg.bulkRounds, t, PerSecond.format(rate(n, d)))
		}
	}
	sec.add("plain, rows/s", PerSecond, res["plain"])
	sec.add("cdc, rows/s", PerSecond, res["cdc"])
	sec.add("cdc ÷ plain", Ratio, ratios(res["cdc"], res["plain"])).Target = &Target{Value: 0.5}
	sec.note("Each cdc statement also writes its %s rows to `cdc.outbox` as one chunk (`json_agg` of the rows), and notifies only while a relay waits (none runs here).",
		thousands(rowsPerStatement))
	return nil
}

// runConcurrentInsert measures commits/s of single-row autocommitted
// INSERTs from several clients at once, plain against cdc.
func runConcurrentInsert(ctx context.Context, e *env, sec *Section) error {
	clients, d := e.cfg.clients, e.cfg.concDuration
	sec.About = fmt.Sprintf("Total commits per second of %d clients, each on its own connection, committing one-row "+
		"INSERTs (autocommit) as fast as they can for %s, into `plain` and into `cdc`; %s, alternating.",
		clients, secs(d), plural(e.cfg.concRounds, "round"))
	conns, err := e.connectN(ctx, clients)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	res := map[string][]float64{}
	waits := map[string]map[string]int{"plain": {}, "cdc": {}}
	samples := map[string]int{}
	for round := 1; round <= e.cfg.concRounds; round++ {
		for _, t := range writeTables {
			if err := e.reset(ctx); err != nil {
				return err
			}
			q := e.insertOneSQL(t)
			var next atomic.Int64
			sampler, err := e.sampleWaits(ctx)
			if err != nil {
				return err
			}
			n, elapsed, err := hammer(ctx, conns, d, func(ctx context.Context, c *pgx.Conn, _ *rand.Rand) error {
				_, err := c.Exec(ctx, q, next.Add(1))
				return err
			})
			counts, total, serr := sampler.finish()
			if err != nil {
				return fmt.Errorf("insert into %s: %w", t, err)
			}
			if serr != nil {
				return fmt.Errorf("sample wait events: %w", serr)
			}
			for ev, c := range counts {
				waits[t][ev] += c
			}
			samples[t] += total
			res[t] = append(res[t], rate(n, elapsed))
			e.progress("concurrent-insert round %d/%d %-5s %s commits/s", round, e.cfg.concRounds, t, PerSecond.format(rate(n, elapsed)))
		}
	}
	sec.add("plain, commits/s", PerSecond, res["plain"])
	sec.add("cdc, commits/s", PerSecond, res["cdc"])
	sec.add("cdc ÷ plain", Ratio, ratios(res["cdc"], res["plain"])).Target = &Target{Value: 0.7}
	sec.Tables = append(sec.Tables, waitTable(
		fmt.Sprintf("What the writers' backends were doing, sampled from `pg_stat_activity` every %s during the rounds "+
			"(share of samples of active backends; `CPU` = active, not waiting):", waitSampleEvery),
		[]string{"plain", "cdc"},
		[]map[string]int{waits["plain"], waits["cdc"]},
		[]int{samples["plain"], samples["cdc"]}))
	sec.note("With `synchronous_commit = on` every commit waits for a WAL flush, which group commit shares between " +
		"concurrent clients. A transaction that has queued a NOTIFY holds PostgreSQL's database-wide notification " +
		"lock (`Lock/object` on `pg_database`) from just before its commit until the commit is flushed, so notifying " +
		"commits flush one at a time.")
	return nil
}

// runUpdateDelete measures UPDATE and DELETE, in bulk and as concurrent
// single-row updates, plain against cdc.
func runUpdateDelete(ctx context.Context, e *env, sec *Section) error {
	n := e.cfg.updRows
	clients, d := e.cfg.clients, e.cfg.concDuration
	sec.About = fmt.Sprintf("Each round loads %s rows (not timed), then times, in order: a bulk UPDATE of every row in "+
		"autocommitted 1,000-row statements by id range (`score = score + 1`, `name = name || '.'`); %d clients on their "+
		"own connections updating random existing rows one per commit for %s; a bulk DELETE of every row in 1,000-row "+
		"statements. %s, alternating plain and cdc.", thousands(n), clients, secs(d), plural(e.cfg.updRounds, "round"))
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

	upd, del, one := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	for round := 1; round <= e.cfg.updRounds; round++ {
		for _, t := range writeTables {
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
			r, err := bulk("UPDATE " + e.table(t) + " SET score = score + 1, name = name || '.' WHERE id BETWEEN $1 AND $2")
			if err != nil {
				return err
			}
			upd[t] = append(upd[t], r)

			q := "UPDATE " + e.table(t) + " SET score = score + 1 WHERE id = $1"
			ops, elapsed, err := hammer(ctx, conns, d, func(ctx context.Context, c *pgx.Conn, rng *rand.Rand) error {
				_, err := c.Exec(ctx, q, 1+rng.Int64N(n))
				return err
			})
			if err != nil {
				return fmt.Errorf("update %s: %w", t, err)
			}
			one[t] = append(one[t], rate(ops, elapsed))

			r, err = bulk("DELETE FROM " + e.table(t) + " WHERE id BETWEEN $1 AND $2")
			if err != nil {
				return err
			}
			del[t] = append(del[t], r)
			e.progress("update-delete round %d/%d %-5s update %s rows/s, single-row update %s commits/s, delete %s rows/s",
				round, e.cfg.updRounds, t, PerSecond.format(upd[t][len(upd[t])-1]),
				PerSecond.format(one[t][len(one[t])-1]), PerSecond.format(r))
		}
	}
	for _, g := range []struct {
		name string
		unit string
		v    map[string][]float64
	}{
		{"bulk UPDATE", "rows/s", upd},
		{"single-row UPDATE", "commits/s", one},
		{"bulk DELETE", "rows/s", del},
	} {
		sec.add(g.name+", plain, "+g.unit, PerSecond, g.v["plain"])
		sec.add(g.name+", cdc, "+g.unit, PerSecond, g.v["cdc"])
		sec.add(g.name+", cdc ÷ plain", Ratio, ratios(g.v["cdc"], g.v["plain"]))
	}
	sec.note("No targets: reported for information. An UPDATE's trigger writes the old and the new rows as one chunk " +
		"(the relay pairs them and computes the changed columns); a DELETE's writes the old rows as one chunk.")
	return nil
}
