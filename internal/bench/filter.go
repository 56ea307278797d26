package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// filterVariant is one table of the row-filter comparison: every variant's
// table has the same shape and takes the same single-row INSERTs, and only
// its triggers differ.
type filterVariant struct {
	name  string // as reported
	table string // in the run's schema
	// opts, when cdc is set, are the capture options pgrelay installs CDC
	// with.
	cdc  bool
	opts sqlkit.CaptureOptions
	// trigger, when set, is the empty statement-level trigger instead.
	trigger bool
	// captured says whether every row the variant's INSERTs write reaches
	// the outbox (else none may).
	captured bool
	// gated says whether its row filter is one that gets gates where the
	// database allows them (sqlkit/functions/18_gate.sql).
	gated bool
}

// The variants' names, as the report and the ratios use them.
const (
	filterPlain    = "plain"
	filterTrigger  = "trigger call only"
	filterRejected = "filtered out"
	filterUngated  = "filtered out, no gate"
	filterCDC      = "cdc"
	filterPasses   = "filter passes"
)

// filterVariants are the row-filter comparison's tables, in the order the
// first round runs them; later rounds rotate it.
var filterVariants = []filterVariant{
	{name: filterPlain, table: "filter_plain"},
	{name: filterTrigger, table: "filter_trigger", trigger: true},
	{name: filterRejected, table: "filter_rejected", cdc: true, opts: sqlkit.CaptureOptions{Where: "id < 0"}, gated: true},
	{name: filterUngated, table: "filter_ungated", cdc: true, opts: sqlkit.CaptureOptions{Where: "id + 0 < 0"}},
	{name: filterCDC, table: "filter_cdc", cdc: true, captured: true},
	{name: filterPasses, table: "filter_passes", cdc: true, opts: sqlkit.CaptureOptions{Where: "id > 0"}, captured: true, gated: true},
}

// filterTriggerFunction is the trigger call only variant's function: what a
// statement-level trigger costs with nothing in it.
const filterTriggerFunction = "filter_empty_trigger"

// runFilter measures what a row filter that rejects every row costs
// single-row writers, against a table without CDC, one with a trigger that
// does nothing, and CDC with and without options.
func runFilter(ctx context.Context, e *env, sec *Section) error {
	if err := needPgbench(); err != nil {
		return err
	}
	clients, rounds := e.cfg.clients, e.cfg.filterRounds
	seconds := max(1, int(e.cfg.concDuration.Round(time.Second).Seconds()))
	sec.About = fmt.Sprintf("Single-row INSERT throughput into five tables of the same shape as `plain` and `cdc`, each "+
		"run's rows committed by pgbench in a process of its own, `pgbench -n -M prepared -c %d -j 2 -T %d` with a "+
		"script of one autocommitted `INSERT … VALUES (nextval(…), 'name', 'user@example.com', 0)` (ids from a "+
		"sequence, always positive): `%s` (no trigger); `%s` (the statement-level trigger pgrelay installs, `AFTER "+
		"INSERT … REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT`, calling an empty PL/pgSQL function that "+
		"returns NULL: the least any capture trigger costs); `%s` (pgrelay's CDC installed by "+
		"`sqlkit.EnsureCDCWith` with the row filter `id < 0`, so that no row reaches the outbox); `%s` (the row "+
		"filter `id + 0 < 0`, which rejects the same rows but, since arithmetic could fail for some row, gets no "+
		"gates: the capture function checks it); `%s` (CDC without "+
		"options); `%s` (CDC with the row filter `id > 0`, which every row passes: the options path with the same "+
		"outbox writes as `%s`). Every run starts from its table and the outbox emptied and a checkpoint; after "+
		"it, the outbox must hold no event of `%s` and one per transaction of the others with CDC. One unrecorded "+
		"1 s run of each table first, then %s, each running every table in turn, the order rotated by one table "+
		"per round; ratios are of the same round's runs. Transactions per second and average latency as pgbench "+
		"reports them (without its initial connection time), and the CPU time the %d backends serving pgbench "+
		"used per transaction (user and system, from `/proc/<pid>/stat`, read every 0.1 s from 0.1 s after "+
		"they had all connected while they all still were, the first reading to the last divided by the "+
		"transactions the id sequence counted in between), which other tenants of the machine disturb far less than the throughput. No relay runs: a "+
		"statement whose rows the filter rejects writes nothing to the outbox, and the trigger then sends no "+
		"notification, so a relay waiting for one would not wake.",
		clients, seconds, filterPlain, filterTrigger, filterRejected, filterUngated, filterCDC, filterPasses, filterCDC,
		filterRejected+"` or `"+filterUngated, plural(rounds, "round"), clients)

	dir, err := os.MkdirTemp("", "pgrelay-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	drop, err := e.createFilterTables(ctx)
	if drop != nil {
		defer drop()
	}
	if err != nil {
		return err
	}
	gated, err := e.filterGated(ctx)
	if err != nil {
		return err
	}
	if gated {
		sec.About += " The tables with a row filter have its gates (sqlkit/functions/18_gate.sql): a row the filter " +
			"rejects is found so by the trigger's WHEN clause, which calls no function."
	} else {
		sec.About += " The tables with a row filter have no gates (sqlkit/functions/18_gate.sql: the benchmark's " +
			"database was migrated without superuser), so the capture function checks the filter."
	}
	seq := pgx.Identifier{e.schema, filterSequence}.Sanitize()
	scripts := map[string]string{}
	for _, v := range filterVariants {
		script := filepath.Join(dir, v.table+".sql")
		insert := "INSERT INTO " + e.table(v.table) + " (id, name, email, score) VALUES (nextval('" +
			strings.ReplaceAll(seq, "'", "''") + "'), 'name', 'user@example.com', 0);\n"
		if err := os.WriteFile(script, []byte(insert), 0o644); err != nil {
			return err
		}
		scripts[v.name] = script
	}

	// once runs variant v for seconds and checks what reached the outbox.
	once := func(v filterVariant, seconds int) (r pgbenchResult, sample cpuSample, err error) {
		for _, q := range []string{
			"TRUNCATE " + e.table(v.table),
			"TRUNCATE cdc.outbox",
			"DELETE FROM cdc.relay_cursor",
			"CHECKPOINT",
		} {
			if _, err := e.pool.Exec(ctx, q); err != nil {
				return r, sample, fmt.Errorf("%s: %s: %w", v.name, q, err)
			}
		}
		if v.cdc {
			if err := noRelayWaiting(ctx, e.pool); err != nil {
				return r, sample, err
			}
		}
		d := time.Duration(seconds) * time.Second
		sampled := make(chan cpuSample, 1)
		sctx, stop := context.WithCancel(ctx)
		go func() { sampled <- e.sampleBackendCPU(sctx, clients, d) }()
		out, err := pgbench(ctx, e.dbURL, e.schema, "-n", "-M", "prepared", "-c", strconv.Itoa(clients), "-j", "2",
			"-T", strconv.Itoa(seconds), "-f", scripts[v.name])
		stop()
		sample = <-sampled
		if err != nil {
			return r, sample, fmt.Errorf("%s: %w", v.name, err)
		}
		if r, err = parsePgbench(out); err != nil {
			return r, sample, fmt.Errorf("%s: %w", v.name, err)
		}
		var rows, events int64
		if err := e.pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM "+e.table(v.table)+"), (SELECT count(*) FROM cdc.events)").
			Scan(&rows, &events); err != nil {
			return r, sample, fmt.Errorf("%s: count the rows and events written: %w", v.name, err)
		}
		want := int64(0)
		if v.captured {
			want = rows
		}
		if events != want {
			return r, sample, fmt.Errorf("%s: %s rows written, %s events in the outbox, expected %s",
				v.name, thousands(rows), thousands(events), thousands(want))
		}
		return r, sample, nil
	}

	for _, v := range filterVariants {
		if _, _, err := once(v, 1); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	tps, lat, cpu := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	var (
		cpuErr      error // why the backends' CPU time was first not measured
		cpuMissing  int   // in how many runs
		cpuMeasured int
	)
	var perRound [][]string
	for round := range rounds {
		var order []string
		for i := range filterVariants {
			v := filterVariants[(round+i)%len(filterVariants)]
			r, sample, err := once(v, seconds)
			if err != nil {
				return err
			}
			c := math.NaN()
			if sample.err == nil {
				c = sample.perTx()
				cpuMeasured++
			} else {
				cpuMissing++
				if cpuErr == nil {
					cpuErr = fmt.Errorf("%s, round %d: %w", v.name, round+1, sample.err)
				}
			}
			tps[v.name], lat[v.name], cpu[v.name] = append(tps[v.name], r.tps), append(lat[v.name], r.latency), append(cpu[v.name], c)
			order = append(order, v.name)
			e.progress("filter round %d/%d %-17s %s tps, latency average %s ms, backend CPU %s µs per transaction",
				round+1, rounds, v.name, PerSecond.format(r.tps), Millis.format(r.latency), Decimal.format(c))
		}
		row := []string{strconv.Itoa(round + 1)}
		for _, v := range filterVariants {
			row = append(row, PerSecond.format(tps[v.name][round]))
		}
		row = append(row,
			Ratio.format(tps[filterRejected][round]/tps[filterTrigger][round]),
			strings.Join(order, " → "))
		perRound = append(perRound, row)
	}

	for _, v := range filterVariants {
		sec.add(v.name+", transactions/s", PerSecond, tps[v.name])
	}
	for _, v := range filterVariants[1:] {
		sec.add(v.name+" ÷ plain", Ratio, ratios(tps[v.name], tps[filterPlain]))
	}
	for _, v := range filterVariants[2:] {
		f := sec.add(v.name+" ÷ "+filterTrigger, Ratio, ratios(tps[v.name], tps[filterTrigger]))
		if v.name == filterRejected {
			f.Target = &Target{Value: 1}
		}
	}
	for _, v := range filterVariants {
		sec.add("latency average, "+v.name+", ms", Millis, lat[v.name])
	}
	if cpuMeasured > 0 {
		for _, v := range filterVariants {
			sec.add("backend CPU per transaction, "+v.name+", µs", Decimal, measured(cpu[v.name]))
		}
		for _, v := range filterVariants[2:] {
			sec.add("backend CPU per transaction, "+v.name+" − "+filterTrigger+", µs", Decimal,
				measured(differences(cpu[v.name], cpu[filterTrigger])))
		}
	}
	if cpuMissing > 0 {
		sec.note("The backends' CPU time could not be measured in %d of %d runs (the first: %s); its figures are of "+
			"the others.", cpuMissing, cpuMissing+cpuMeasured, cpuErr)
	}
	header := []string{"round"}
	for _, v := range filterVariants {
		header = append(header, v.name+", tps")
	}
	header = append(header, filterRejected+" ÷ "+filterTrigger, "order run")
	sec.Tables = append(sec.Tables, Table{Caption: "Transactions per second of each round:", Header: header, Rows: perRound})
	sec.note("The target is the issue's: a table whose filter rejects every row should cost writers no more than a "+
		"table without CDC plus the trigger call. Through gates, such a statement costs the evaluation of two WHEN "+
		"clauses, the gate's per row and the capture trigger's once, and calls no function; without them, the "+
		"capture function runs, pins its search_path (a SET clause) and runs one query on the transition table "+
		"to find that no row passes. `%s` shows what the options path costs over `%s` for the same outbox writes.",
		filterPasses, filterCDC)
	return nil
}

// differences subtracts b[i] from a[i] pairwise, as ratios divides.
func differences(a, b []float64) []float64 {
	out := make([]float64, 0, min(len(a), len(b)))
	for i := range min(len(a), len(b)) {
		out = append(out, a[i]-b[i])
	}
	return out
}

// measured returns vs without its NaNs, the runs not measured.
func measured(vs []float64) []float64 {
	out := make([]float64, 0, len(vs))
	for _, v := range vs {
		if !math.IsNaN(v) {
			out = append(out, v)
		}
	}
	return out
}

// filterSequence hands out the ids of the row-filter comparison's rows, and
// counts its transactions: each takes one.
const filterSequence = "filter_ids"

// filterGated tells whether every table of the comparison whose row
// filter can be gated has its gates, as sqlkit.CapturedTables reports them.
func (e *env) filterGated(ctx context.Context) (bool, error) {
	captured, err := sqlkit.CapturedTables(ctx, e.pool)
	if err != nil {
		return false, fmt.Errorf("filter: look for gates: %w", err)
	}
	gated := map[string]bool{}
	for _, t := range captured {
		if t.Schema == e.schema {
			gated[t.Name] = t.Gated
		}
	}
	for _, v := range filterVariants {
		if v.gated && !gated[v.table] {
			return false, nil
		}
	}
	return true, nil
}

// createFilterTables creates the row-filter comparison's id sequence, tables
// and triggers in the run's schema, and returns the function that drops them
// again.
func (e *env) createFilterTables(ctx context.Context) (drop func(), err error) {
	var names []string
	for _, v := range filterVariants {
		names = append(names, e.table(v.table))
	}
	fn := e.table(filterTriggerFunction)
	seq := pgx.Identifier{e.schema, filterSequence}.Sanitize()
	drop = func() {
		ctx := context.WithoutCancel(ctx)
		for _, q := range []string{
			"DROP TABLE IF EXISTS " + strings.Join(names, ", "),
			"DROP FUNCTION IF EXISTS " + fn + "()",
			"DROP SEQUENCE IF EXISTS " + seq,
			"TRUNCATE cdc.outbox",
		} {
			if _, err := e.pool.Exec(ctx, q); err != nil {
				e.progress("filter: clean up: %s: %v", q, err)
			}
		}
	}
	ddl := []string{
		"CREATE SEQUENCE " + seq,
		"CREATE FUNCTION " + fn + "() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN RETURN NULL; END $fn$",
	}
	for _, v := range filterVariants {
		ddl = append(ddl, e.createTableSQL(v.table))
		if v.trigger {
			ddl = append(ddl, "CREATE TRIGGER filter_empty AFTER INSERT ON "+e.table(v.table)+
				" REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "+fn+"()")
		}
	}
	for _, q := range ddl {
		if _, err := e.pool.Exec(ctx, q); err != nil {
			return drop, fmt.Errorf("filter: set up: %s: %w", strings.Join(strings.Fields(q)[0:3], " "), err)
		}
	}
	for _, v := range filterVariants {
		if !v.cdc {
			continue
		}
		t := sqlkit.Table{Schema: e.schema, Name: v.table}
		if _, err := sqlkit.EnsureCDCWith(ctx, e.pool, v.opts, t); err != nil {
			return drop, fmt.Errorf("filter: CDC for %s: %w", v.table, err)
		}
	}
	return drop, nil
}
