package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pgrelay/pgrelay/relay"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat: clock ticks of
// 1/100 s on every architecture Linux and Go share.
const userHZ = 100

// cpuTime returns the CPU time the relay process has used so far, user and
// system, all its threads: utime + stime from /proc/<pid>/stat.
func (p *relayProc) cpuTime() (time.Duration, error) {
	if err := p.running(); err != nil {
		return 0, err
	}
	return procCPU(p.cmd.Process.Pid)
}

// procCPU returns the CPU time process pid of this machine has used so far,
// user and system, all its threads: utime + stime from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces;
	// the fields after it start with the state, field 3.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc/<pid>/stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc/<pid>/stat")
	}
	var ticks int64
	for _, s := range f[11:13] { // utime and stime, fields 14 and 15
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/<pid>/stat: %w", err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// idleSample is the relay's cumulative cost at one moment of the idle
// watch.
type idleSample struct {
	at                time.Duration // since the watch began
	cpu               time.Duration
	queries, executes int64
	connectionsOpened int64
}

// runIdle measures what a relay with nothing to deliver costs: its own CPU
// and the statements it sends PostgreSQL.
func runIdle(ctx context.Context, e *env, sec *Section) error {
	d, every := e.cfg.idleDuration, e.cfg.idleSampleEvery
	sec.About = fmt.Sprintf("`relay run` (the binary, default flags: poll every %s, watchdog and lease renewal every "+
		"%s) is started on an empty outbox and left alone, once it has delivered one probe event, for %s, sampled "+
		"every %s. CPU is the process's `utime + stime` from `/proc/<pid>/stat` (all threads, in 10 ms ticks), as a "+
		"share of one core over the watch. Statements are counted on the wire: the relay connects to PostgreSQL "+
		"through a small proxy in the suite that reads the messages it sends and counts every Query (simple "+
		"protocol) and Execute (extended protocol, one per statement run), pings included, so nothing it sends is "+
		"missed and nobody else's statements are counted; `pg_stat_database` would count transactions, not "+
		"statements, and lets an idle backend report its counts up to seconds late. Nothing else writes meanwhile.",
		secs(relay.DefaultPollInterval), secs(relay.DefaultWatchdogInterval), secs(d), secs(every))
	if err := e.reset(ctx); err != nil {
		return err
	}
	counter, url, err := newStatementCounter(e.dbURL)
	if err != nil {
		return err
	}
	defer counter.close()
	sub, err := e.subscribe(ctx, e.channel())
	if err != nil {
		return err
	}
	defer sub.close()
	proc, err := e.startProbedRelay(ctx, e.mainDB(), url, sub)
	if err != nil {
		return err
	}
	defer proc.stop()
	// Let it go back to waiting after the probe's batch.
	if err := sleepCtx(ctx, time.Second); err != nil {
		return err
	}

	sample := func(at time.Duration) (idleSample, error) {
		cpu, err := proc.cpuTime()
		return idleSample{at: at, cpu: cpu, queries: counter.queries.Load(), executes: counter.executes.Load(),
			connectionsOpened: counter.conns.Load()}, err
	}
	start := time.Now()
	first, err := sample(0)
	if err != nil {
		return err
	}
	samples := []idleSample{first}
	for next := every; next <= d; next += every {
		if err := sleepCtx(ctx, time.Until(start.Add(next))); err != nil {
			return err
		}
		s, err := sample(time.Since(start))
		if err != nil {
			return err
		}
		samples = append(samples, s)
	}
	if err := counter.failure(); err != nil {
		return err
	}

	last := samples[len(samples)-1]
	span := last.at - first.at
	cpu := 100 * float64(last.cpu-first.cpu) / float64(span)
	stmts := float64(last.queries+last.executes-first.queries-first.executes) / span.Seconds()
	sec.add("relay CPU, % of one core", Percent, []float64{cpu}).Target = &Target{AtMost: true, Value: 1}
	sec.add("statements sent to PostgreSQL per second", Decimal, []float64{stmts}).Target = &Target{AtMost: true, Value: 5}
	sec.add("connections opened during the watch", Count, []float64{float64(last.connectionsOpened - first.connectionsOpened)})
	rows := make([][]string, 0, len(samples)-1)
	for i, s := range samples[1:] {
		prev := samples[i]
		rows = append(rows, []string{
			strconv.FormatFloat(s.at.Seconds(), 'f', 0, 64),
			strconv.FormatInt((s.cpu - prev.cpu).Milliseconds(), 10),
			strconv.FormatInt(s.queries-prev.queries, 10),
			strconv.FormatInt(s.executes-prev.executes, 10),
		})
	}
	sec.Tables = append(sec.Tables, Table{
		Caption: fmt.Sprintf("Per interval of %s:", secs(every)),
		Header:  []string{"until t (s)", "relay CPU (ms)", "Query messages", "Execute messages"},
		Rows:    rows,
	})
	e.progress("idle: relay CPU %s of one core, %s statements/s over %s", Percent.format(cpu), Decimal.format(stmts), secs(span))
	sec.note("One watch of one process, so each figure is a single value: the whole watch's total over its length. " +
		"Pruning runs at most once a minute and only after a fetch, so a watch shorter than that may not include one.")
	return nil
}
