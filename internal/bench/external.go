package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// externalRate is the writers' schedule of the external latency
// measurement, in single-row commits per second.
const externalRate = 1000

// runLatencyExternal measures the time from a row change to its arrival at
// a subscriber with the relay, the writers and the subscriber each in a
// process of its own, as they are in production.
func runLatencyExternal(ctx context.Context, e *env, sec *Section) error {
	if err := needPgbench(); err != nil {
		return err
	}
	conns, rounds, d := e.cfg.slowConns, e.cfg.latRounds, e.cfg.latDuration
	sec.About = fmt.Sprintf("`relay run` (the binary, default flags) delivers to Redis; pgbench, in a process of its own, "+
		"commits single-row INSERTs into `cdc` at %s rows/s on a Poisson schedule (`pgbench -n -M prepared -R %d -T %d "+
		"-c %d -j 2` with a script of one `INSERT … VALUES (nextval(…), …, clock_timestamp())`); a subscriber "+
		"process (the suite's own binary re-run as one) takes each message's arrival time minus its `timestamp` field "+
		"(the capture trigger's `clock_timestamp()`, inside the writer's transaction, before its commit; same machine "+
		"and clock). One relay and one subscriber process for all rounds, started and past one probe event first; "+
		"%s of %s after a 1 s warm-up that is not recorded, percentiles per round.",
		thousands(externalRate), externalRate, int(d.Seconds()), conns, plural(rounds, "round"), secs(d))
	if err := e.reset(ctx); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "pgrelay-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	seq := pgx.Identifier{e.schema, "external_ids"}.Sanitize()
	if _, err := e.pool.Exec(ctx, "CREATE SEQUENCE "+seq); err != nil {
		return fmt.Errorf("create the writers' id sequence: %w", err)
	}
	defer e.pool.Exec(context.WithoutCancel(ctx), "DROP SEQUENCE "+seq) //nolint:errcheck // the database is dropped at the end anyway
	script := filepath.Join(dir, "insert.sql")
	insert := "INSERT INTO " + e.table("cdc") + " (id, name, email, score, created) VALUES (nextval('" +
		strings.ReplaceAll(seq, "'", "''") + "'), 'external', 'external@example.com', 0, clock_timestamp());\n"
	if err := os.WriteFile(script, []byte(insert), 0o644); err != nil {
		return err
	}

	sub, err := e.startSubscriberProcess(ctx, e.channel(), true)
	if err != nil {
		return err
	}
	defer sub.close()
	proc, err := e.startProbedRelay(ctx, e.mainDB(), e.dbURL, sub)
	if err != nil {
		return err
	}
	defer proc.stop()

	received := int64(1) // the probe
	// round runs pgbench for d and returns its report and the latencies of
	// the events it wrote, sorted.
	round := func(d time.Duration) (pgbenchResult, []time.Duration, error) {
		out, err := pgbench(ctx, e.dbURL, e.schema, "-n", "-M", "prepared", "-R", strconv.Itoa(externalRate),
			"-T", strconv.Itoa(int(d.Seconds())), "-c", strconv.Itoa(conns), "-j", "2", "-f", script)
		if err != nil {
			return pgbenchResult{}, nil, err
		}
		r, err := parsePgbench(out)
		if err != nil {
			return r, nil, err
		}
		received += r.processed
		if _, err := sub.wait(ctx, received, 60*time.Second); err != nil {
			return r, nil, err
		}
		if err := proc.running(); err != nil {
			return r, nil, err
		}
		s, bad := sub.takeSamples()
		if bad > 0 {
			return r, nil, fmt.Errorf("%d messages had no readable timestamp", bad)
		}
		if int64(len(s)) != r.processed {
			return r, nil, fmt.Errorf("pgbench committed %s rows, the subscriber recorded %s latencies",
				thousands(r.processed), thousands(int64(len(s))))
		}
		slices.Sort(s)
		return r, s, nil
	}
	if _, _, err := round(time.Second); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	var got, p50, p90, p99, mx, wlat, lag []float64
	for i := 1; i <= rounds; i++ {
		r, s, err := round(d)
		if err != nil {
			return err
		}
		got, wlat, lag = append(got, r.tps), append(wlat, r.latency), append(lag, r.lag)
		p50, p90 = append(p50, ms(percentile(s, 0.50))), append(p90, ms(percentile(s, 0.90)))
		p99, mx = append(p99, ms(percentile(s, 0.99))), append(mx, ms(percentile(s, 1)))
		e.progress("latency-external round %d/%d: %s events/s achieved, p50 %s ms, p90 %s ms, p99 %s ms, max %s ms; pgbench latency average %s ms",
			i, rounds, PerSecond.format(r.tps), Millis.format(p50[i-1]), Millis.format(p90[i-1]),
			Millis.format(p99[i-1]), Millis.format(mx[i-1]), Millis.format(r.latency))
	}
	sec.add("rate achieved, events/s", PerSecond, got)
	sec.add("p50, ms", Millis, p50).Target = &Target{AtMost: true, Value: 1}
	sec.add("p90, ms", Millis, p90)
	sec.add("p99, ms", Millis, p99).Target = &Target{AtMost: true, Value: 5}
	sec.add("max, ms", Millis, mx)
	sec.add("writer transaction latency, average (pgbench), ms", Millis, wlat)
	sec.add("pgbench schedule lag, average, ms", Millis, lag)
	sec.note("The end-to-end latency includes the writer's own commit (WAL flush), the NOTIFY, the relay's fetch and " +
		"PUBLISH, and Redis delivering to the subscriber process. pgbench times each transaction from its scheduled " +
		"start, so its average includes the schedule lag shown below it; the `latency` section measures the same path " +
		"with the relay, the writers and the subscriber all inside the suite's process.")
	return nil
}

// runDrainExternal measures how fast the relay binary delivers a backlog
// to a subscriber in another process, timed from starting the relay.
func runDrainExternal(ctx context.Context, e *env, sec *Section) error {
	n := e.cfg.drainEvents
	sec.About = fmt.Sprintf("A backlog of %s events is committed into `cdc` (1,000-row transactions) with no relay "+
		"running, and a subscriber process (the suite's own binary re-run as one) subscribes; then `relay run` (the "+
		"binary, default flags) is started, and timed from starting the process, start-up and connecting included, "+
		"until the subscriber process has received every event (its own clock, read as each message arrives). A "+
		"fresh backlog, relay and subscriber process per round; %s.", thousands(n), plural(e.cfg.drainRounds, "round"))
	var rates, times, rss []float64
	for round := 1; round <= e.cfg.drainRounds; round++ {
		if err := e.reset(ctx); err != nil {
			return err
		}
		if _, err := e.writeBacklog(ctx, n); err != nil {
			return err
		}
		r, d, err := drainProcess(ctx, e, n, func(ctx context.Context) (receiver, error) {
			return e.startSubscriberProcess(ctx, e.channel(), false)
		})
		if err != nil {
			return err
		}
		rates, times, rss = append(rates, rate(n, d)), append(times, d.Seconds()), append(rss, r)
		e.progress("drain-external round %d/%d: %s events/s, %.2fs from starting the relay, peak RSS %s MiB",
			round, e.cfg.drainRounds, PerSecond.format(rate(n, d)), d.Seconds(), MiB.format(r))
	}
	sec.add("events/s (from starting the relay until the subscriber process has all)", PerSecond, rates).
		Target = &Target{Value: 300_000}
	sec.add("drain time, s", Seconds, times)
	sec.add("relay peak RSS, MiB", MiB, rss)
	sec.note("The `drain` section times an in-process relay from `Start`, without the process's start-up; " +
		"this one is what an operator restarting the relay on a backlog sees.")
	return nil
}
