package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// runDrainTPCB measures how fast an in-process relay delivers a backlog that
// pgbench's own TPC-B script wrote: small transactions of four statements
// that wait on each other's row locks, the shape where the order of
// delivery and the per-transaction work of a fetch matter most.
func runDrainTPCB(ctx context.Context, e *env, sec *Section) error {
	if err := needPgbench(); err != nil {
		return err
	}
	clients, perClient := e.cfg.clients, e.cfg.tpcbTransactions
	sec.About = fmt.Sprintf("pgbench's built-in TPC-B script (`pgbench -n -c %d -j 2 -t %d`, scale 1, in a process of "+
		"its own, its tables in the run's schema with CDC on all four) writes a backlog of %s transactions of 3 updates "+
		"and 1 insert each, with no relay running; then an in-process relay (`relay.New` with `handlers.NewRedis`, "+
		"default batch size) is started and timed from `Start` until a separate Redis subscriber (`PSUBSCRIBE "+
		"<schema>.pgbench_*.cdc_events`) has received every event. %s.", clients, perClient,
		thousands(int64(clients*perClient)), plural(e.cfg.drainRounds, "round"))
	var sub, pub []float64
	for round := 1; round <= e.cfg.drainRounds; round++ {
		n, err := e.writeTPCB(ctx, clients, perClient)
		if err != nil {
			return err
		}
		s, p, _, err := e.timeDrain(ctx, tpcbChannel(e.schema), n)
		if err != nil {
			return err
		}
		sub, pub = append(sub, s), append(pub, p)
		e.progress("drain-tpcb round %d/%d: %s events, %s events/s (relay finished publishing at %s events/s)",
			round, e.cfg.drainRounds, thousands(n), PerSecond.format(s), PerSecond.format(p))
	}
	sec.add("events/s (until the subscriber has all)", PerSecond, sub)
	sec.add("events/s (until the relay has published all)", PerSecond, pub)
	return nil
}

// writeTPCB sets pgbench's tables up afresh in the run's schema with CDC,
// empties the outbox and the relays' positions, runs pgbench's TPC-B script
// with no relay, and returns how many events it left in the outbox.
func (e *env) writeTPCB(ctx context.Context, clients, perClient int) (int64, error) {
	tables, err := initTPCB(ctx, e.pool, e.dbURL, e.schema, 1)
	if err != nil {
		return 0, err
	}
	for _, q := range []string{
		"TRUNCATE cdc.outbox",
		"DELETE FROM cdc.relay_cursor",
		"CHECKPOINT",
	} {
		if _, err := e.pool.Exec(ctx, q); err != nil {
			return 0, fmt.Errorf("tpc-b set-up: %s: %w", q, err)
		}
	}
	if _, err := sqlkit.EnsureCDCFor(ctx, e.pool, tables...); err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := pgbench(ctx, e.dbURL, e.schema, "-n", "-c", strconv.Itoa(clients), "-j", "2", "-t", strconv.Itoa(perClient)); err != nil {
		return 0, err
	}
	d := time.Since(start)
	n, err := countEvents(ctx, e.pool)
	if err != nil {
		return 0, err
	}
	e.progress("  pgbench wrote %s events in %.1fs (%s transactions/s)",
		thousands(n), d.Seconds(), PerSecond.format(rate(int64(clients*perClient), d)))
	return n, nil
}

// lastLine returns the last non-empty line of s, for error messages.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
