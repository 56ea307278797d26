package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// pgbench's TPC-B tables; pgbench_history gets a primary key so that CDC can
// key its rows.
var tpcbTables = []string{"pgbench_accounts", "pgbench_branches", "pgbench_history", "pgbench_tellers"}

// needPgbench returns an error unless pgbench runs. On Debian /usr/bin/pgbench
// is a wrapper that exists even where the program does not, hence running
// it rather than looking it up.
func needPgbench() error {
	if out, err := exec.Command("pgbench", "--version").CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench does not run (on Debian it comes with the postgresql package): %w: %s",
			err, lastLine(string(out)))
	}
	return nil
}

// pgbench runs pgbench with args on the database at url and returns its
// output. Its search_path is schema, so that the tables it creates and the
// unqualified names of its scripts are the run's own: their Redis channels
// then cannot collide with anyone else's pgbench tables.
func pgbench(ctx context.Context, url, schema string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "pgbench", append(args, url)...)
	cmd.Env = append(os.Environ(), "PGOPTIONS=-c search_path="+schema)
	// Should the suite be killed outright, the kernel ends pgbench too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("pgbench %s: %w: %s", strings.Join(args, " "), err, lastLine(string(out)))
	}
	return string(out), nil
}

// initTPCB creates pgbench's tables at scale in schema (which must exist) of
// the database at url, which pool is connected to, gives pgbench_history its
// primary key, and returns the four tables, without CDC.
func initTPCB(ctx context.Context, pool *pgxpool.Pool, url, schema string, scale int) ([]sqlkit.Table, error) {
	if _, err := pgbench(ctx, url, schema, "-i", "-s", strconv.Itoa(scale), "-q"); err != nil {
		return nil, err
	}
	q := "ALTER TABLE " + pgx.Identifier{schema, "pgbench_history"}.Sanitize() + " ADD COLUMN hid bigserial PRIMARY KEY"
	if _, err := pool.Exec(ctx, q); err != nil {
		return nil, fmt.Errorf("tpc-b set-up: %s: %w", q, err)
	}
	tables := make([]sqlkit.Table, len(tpcbTables))
	for i, t := range tpcbTables {
		tables[i] = sqlkit.Table{Schema: schema, Name: t}
	}
	return tables, nil
}

// tpcbChannel is the pattern of the Redis channels of the TPC-B tables in
// schema.
func tpcbChannel(schema string) string {
	return schema + ".pgbench_*.cdc_events"
}

// countEvents returns how many events the outbox of the database pool is
// connected to holds, as the relay will deliver them.
func countEvents(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var n int64
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM cdc.events").Scan(&n); err != nil {
		return 0, fmt.Errorf("count the events in the outbox: %w", err)
	}
	return n, nil
}

// pgbenchResult is what a pgbench run reports.
type pgbenchResult struct {
	processed int64   // transactions processed
	failed    int64   // failed transactions
	tps       float64 // transactions per second, without the initial connection time
	latency   float64 // average transaction latency, ms
	lag       float64 // average schedule lag under -R, ms; 0 without -R
}

// pgbenchLines are the lines of pgbench's (15's) report that parsePgbench
// reads.
var pgbenchLines = map[string]*regexp.Regexp{
	"processed": regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`),
	"failed":    regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`),
	"tps":       regexp.MustCompile(`(?m)^tps = ([0-9.]+)`),
	"latency":   regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`),
	"lag":       regexp.MustCompile(`(?m)^rate limit schedule lag: avg ([0-9.]+)`),
}

// parsePgbench reads a pgbench report. Every line but the schedule lag's
// (printed only under -R) and the failed transactions' (printed since
// pgbench 15) must be there.
func parsePgbench(out string) (pgbenchResult, error) {
	var firstErr error
	num := func(key string, optional bool) float64 {
		m := pgbenchLines[key].FindStringSubmatch(out)
		if m == nil {
			if !optional && firstErr == nil {
				firstErr = fmt.Errorf("no %s line in pgbench's output: %s", key, oneLine(out))
			}
			return 0
		}
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("pgbench's %s line: %w", key, err)
		}
		return v
	}
	r := pgbenchResult{
		processed: int64(num("processed", false)),
		failed:    int64(num("failed", true)),
		tps:       num("tps", false),
		latency:   num("latency", false),
		lag:       num("lag", true),
	}
	if firstErr != nil {
		return r, firstErr
	}
	if r.failed > 0 {
		return r, fmt.Errorf("pgbench reports %d failed transactions", r.failed)
	}
	return r, nil
}
