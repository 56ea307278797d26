package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// tpcbDB is the TPC-B comparison's database: pgbench's tables at the
// configured scale in the run's schema, in a database of their own.
type tpcbDB struct {
	captureDB
	schema string
	tables []sqlkit.Table
}

// runTPCB measures pgbench's built-in TPC-B script on the three sides.
func runTPCB(ctx context.Context, e *env, sec *Section) error {
	if err := needPgbench(); err != nil {
		return err
	}
	clients, d, scale := e.cfg.clients, e.cfg.tpcbDuration, e.cfg.tpcbScale
	sec.About = fmt.Sprintf("pgbench's built-in TPC-B script (3 UPDATEs and 1 INSERT per transaction), `pgbench -n -c %d "+
		"-j 2 -T %d`, in a process of its own, on tables made by `pgbench -i -s %d` once, in a database of their own "+
		"(`pgbench_history` given a primary key, `hid bigserial`); `synchronous_commit` as the server has it. Three sides "+
		"on the same tables, each round running them in turn: `plain` (CDC removed from the four tables), `cdc` "+
		"(CDC on all four, no relay running), `cdc+relay` (the same with `relay run` delivering to Redis meanwhile, a "+
		"subscriber in the suite's process reading every event, started and past one probe event before pgbench starts; "+
		"the run ends when the subscriber has every event). Every run starts from the same state: pgbench's history "+
		"and the outbox emptied, the relay's position forgotten, the four tables vacuumed and analysed (the header says "+
		"whether autovacuum runs; without a vacuum the dead rows of earlier runs would slow later ones), and a "+
		"checkpoint, so that every run pays the same full-page writes. Transactions per second and average latency as pgbench reports them (without its "+
		"initial connection time); %s.", clients, int(d.Seconds()), scale, plural(e.cfg.tpcbRounds, "round"))

	db, cleanup, err := e.newTPCBDB(ctx, scale)
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		return err
	}
	tps, lat := map[string][]float64{}, map[string][]float64{}
	var lags []float64
	for round := 1; round <= e.cfg.tpcbRounds; round++ {
		for _, s := range writeSides {
			if err := db.prepare(ctx, s); err != nil {
				return err
			}
			var r pgbenchResult
			lag, err := db.onSide(ctx, e, s, func() (int64, time.Time, error) {
				before, err := countEvents(ctx, db.pool)
				if err != nil {
					return 0, time.Time{}, err
				}
				out, err := pgbench(ctx, db.url, db.schema, "-n", "-c", strconv.Itoa(clients), "-j", "2",
					"-T", strconv.Itoa(int(d.Seconds())))
				end := time.Now()
				if err != nil {
					return 0, end, err
				}
				if r, err = parsePgbench(out); err != nil {
					return 0, end, err
				}
				if !s.relay {
					return 0, end, nil
				}
				after, err := countEvents(ctx, db.pool)
				return after - before, end, err
			})
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			tps[s.name], lat[s.name] = append(tps[s.name], r.tps), append(lat[s.name], r.latency)
			if s.relay {
				lags = append(lags, ms(lag))
			}
			e.progress("tpcb round %d/%d %-9s %s tps, latency average %s ms", round, e.cfg.tpcbRounds, s.name,
				PerSecond.format(r.tps), Millis.format(r.latency))
		}
	}
	addSides(sec, "", "transactions/s", tps, &Target{Value: 0.6})
	for _, s := range writeSides {
		sec.add("latency average, "+s.name+", ms", Millis, lat[s.name])
	}
	sec.add("cdc+relay: every event received, ms after pgbench exited", Millis, lags)
	sec.note("Each TPC-B transaction updates one row of `pgbench_branches` (%d rows at this scale), so the clients "+
		"queue on those rows' locks whatever the capture costs; every statement of a cdc transaction also writes its "+
		"row to `cdc.outbox`. The relay side's last row is timed from pgbench's exit, which follows its last COMMIT by "+
		"a few milliseconds: a negative figure means the relay had delivered everything before pgbench had exited.", scale)
	return nil
}

// newTPCBDB creates the TPC-B database, installs pgrelay's schema there and
// pgbench's tables at scale. cleanup, when not nil, must be called even if
// err is not nil: it closes the pool and drops the database.
func (e *env) newTPCBDB(ctx context.Context, scale int) (db *tpcbDB, cleanup func(), err error) {
	name := e.dbName + "_tpcb"
	url, err := withDatabase(e.adminURL, name)
	if err != nil {
		return nil, nil, err
	}
	drop, err := e.createDatabase(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	e.progress("  created database %s", name)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, drop, err
	}
	cleanup = func() {
		pool.Close()
		drop()
	}
	if err := sqlkit.Migrate(ctx, pool); err != nil {
		return nil, cleanup, fmt.Errorf("tpc-b database: %w", err)
	}
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{e.schema}.Sanitize()); err != nil {
		return nil, cleanup, fmt.Errorf("tpc-b database: create schema: %w", err)
	}
	start := time.Now()
	tables, err := initTPCB(ctx, pool, url, e.schema, scale)
	if err != nil {
		return nil, cleanup, err
	}
	e.progress("  pgbench -i -s %d took %.1fs", scale, time.Since(start).Seconds())
	history := pgx.Identifier{e.schema, "pgbench_history"}.Sanitize()
	db = &tpcbDB{
		captureDB: captureDB{url: url, pool: pool, channel: tpcbChannel(e.schema),
			// A history row, as TPC-B writes them; the next run empties
			// the history again.
			probe: func(ctx context.Context) error {
				_, err := pool.Exec(ctx, "INSERT INTO "+history+" (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 0, now())")
				return err
			}},
		schema: e.schema,
		tables: tables,
	}
	return db, cleanup, nil
}

// prepare brings the TPC-B tables to the state every run starts from, with
// CDC on or off for side s.
func (db *tpcbDB) prepare(ctx context.Context, s side) error {
	names := make([]string, len(db.tables))
	for i, t := range db.tables {
		names[i] = pgx.Identifier{t.Schema, t.Name}.Sanitize()
	}
	// The history goes first: truncating it under CDC records an event,
	// which emptying the outbox then removes.
	steps := []string{
		"TRUNCATE " + pgx.Identifier{db.schema, "pgbench_history"}.Sanitize(),
		"TRUNCATE cdc.outbox",
		"DELETE FROM cdc.relay_cursor",
	}
	for _, q := range steps {
		if _, err := db.pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("tpc-b: %s: %w", q, err)
		}
	}
	change, what := sqlkit.RemoveCDCFor, "remove"
	if s.cdc {
		change, what = sqlkit.EnsureCDCFor, "ensure"
	}
	if _, err := change(ctx, db.pool, db.tables...); err != nil {
		return fmt.Errorf("tpc-b: %s CDC: %w", what, err)
	}
	for _, q := range []string{"VACUUM (ANALYZE) " + strings.Join(names, ", "), "CHECKPOINT"} {
		if _, err := db.pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("tpc-b: %s: %w", q, err)
		}
	}
	return nil
}
