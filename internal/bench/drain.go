package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgrelay/pgrelay/relay"
)

// drainTimeout is how long a drain may take before the round fails: far
// beyond any plausible rate, so that a stuck relay ends the measurement
// instead of the run.
func drainTimeout(n int64) time.Duration {
	return max(60*time.Second, time.Duration(n)*time.Second/5000)
}

// runDrain measures how fast an in-process relay delivers a backlog to a
// Redis subscriber, against a naive relay measured in the same run.
func runDrain(ctx context.Context, e *env, sec *Section) error {
	n, nn := e.cfg.drainEvents, e.cfg.naiveEvents
	sec.About = fmt.Sprintf("A backlog of %s events is committed into `cdc` (1,000-row transactions) with no relay "+
		"running; then an in-process relay (`relay.New` with `handlers.NewRedis`, default batch size) is started and "+
		"timed from `Start` until a separate Redis subscriber has received every event. The naive floor, alternated "+
		"with it round by round, delivers a backlog of %s events, copied into an outbox of one row per event, with one `SELECT … WHERE txid = $1 AND "+
		"id = $2` and one unpipelined PUBLISH per event, as a relay that reads one row per notification would. "+
		"%s of each.", thousands(n), thousands(nn), plural(e.cfg.drainRounds, "round"))

	var pg, pub, naive []float64
	extra := int64(0)
	for round := 1; round <= e.cfg.drainRounds; round++ {
		r, p, dup, err := drainOnce(ctx, e, n)
		if err != nil {
			return err
		}
		pg, pub = append(pg, r), append(pub, p)
		extra += dup
		e.progress("drain round %d/%d pgrelay %s events/s (relay finished publishing at %s events/s)",
			round, e.cfg.drainRounds, PerSecond.format(r), PerSecond.format(p))

		r, err = naiveOnce(ctx, e, nn)
		if err != nil {
			return err
		}
		naive = append(naive, r)
		e.progress("drain round %d/%d naive   %s events/s", round, e.cfg.drainRounds, PerSecond.format(r))
	}
	sec.add("pgrelay, events/s (until the subscriber has all)", PerSecond, pg).Target = &Target{Value: 150_000}
	sec.add("pgrelay, events/s (until the relay has published all)", PerSecond, pub)
	sec.add("naive, events/s", PerSecond, naive)
	sec.add("pgrelay ÷ naive", Ratio, ratios(pg, naive)).Target = &Target{Value: 20}
	sec.note("The second row times the relay alone (from Start until its Redis pipeline for the last batch returned); " +
		"the gap to the first is the subscriber still reading, on the same cores.")
	if extra > 0 {
		sec.note("The subscriber received %s more messages than events written: events delivered twice.", thousands(extra))
	}
	return nil
}

// drainOnce writes a backlog of n events, then times an in-process relay
// delivering it. It returns the subscriber's and the relay's rates and how
// many messages arrived beyond n.
func drainOnce(ctx context.Context, e *env, n int64) (subRate, pubRate float64, extra int64, err error) {
	if err := e.reset(ctx); err != nil {
		return 0, 0, 0, err
	}
	if _, err := e.writeBacklog(ctx, n); err != nil {
		return 0, 0, 0, err
	}
	return e.timeDrain(ctx, e.channel(), n)
}

// timeDrain starts an in-process relay on the backlog in the outbox and
// returns the rates at which the subscriber to channel received, and the
// relay published, its n events, and how many messages arrived beyond n.
func (e *env) timeDrain(ctx context.Context, channel string, n int64) (subRate, pubRate float64, extra int64, err error) {
	sub, err := e.subscribe(ctx, channel)
	if err != nil {
		return 0, 0, 0, err
	}
	defer sub.close()
	p, err := e.newRelay()
	if err != nil {
		return 0, 0, 0, err
	}
	start := time.Now()
	if err := p.r.Start(ctx); err != nil {
		p.close()
		return 0, 0, 0, fmt.Errorf("start relay: %w", err)
	}
	at, err := sub.wait(ctx, n, drainTimeout(n))
	p.close()
	if err != nil {
		return 0, 0, 0, err
	}
	pubAt := time.Unix(0, p.handler.lastAt.Load())
	return rate(n, at.Sub(start)), rate(n, pubAt.Sub(start)), sub.count.Load() - n, nil
}

// naiveOnce writes a backlog of n events, then times the naive relay: one
// SELECT per event, one unpipelined PUBLISH per event, on one connection
// each. The list of (txid, id) pairs stands for the per-event notifications
// such a design would receive and is read before the clock starts.
func naiveOnce(ctx context.Context, e *env, n int64) (float64, error) {
	if err := e.reset(ctx); err != nil {
		return 0, err
	}
	if _, err := e.writeBacklog(ctx, n); err != nil {
		return 0, err
	}
	conn, err := e.connect(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// Such a relay reads an outbox of one row per event, as the per-row
	// triggers it goes with write: a copy of the backlog, one row per event,
	// indexed like cdc.outbox.
	naiveOutbox := e.table("naive_outbox")
	for _, q := range []string{
		"DROP TABLE IF EXISTS " + naiveOutbox,
		"CREATE TABLE " + naiveOutbox + " AS SELECT * FROM cdc.events",
		"ALTER TABLE " + naiveOutbox + " ADD PRIMARY KEY (txid, id)",
		"VACUUM ANALYZE " + naiveOutbox,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return 0, fmt.Errorf("naive outbox: %w", err)
		}
	}
	type key struct {
		txid uint64
		id   int64
	}
	rows, err := conn.Query(ctx, "SELECT txid, id FROM "+naiveOutbox+" ORDER BY txid, id")
	if err != nil {
		return 0, err
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (key, error) {
		var k key
		err := r.Scan(&k.txid, &k.id)
		return k, err
	})
	if err != nil {
		return 0, fmt.Errorf("list backlog: %w", err)
	}
	sub, err := e.subscribe(ctx, e.channel())
	if err != nil {
		return 0, err
	}
	defer sub.close()
	rdb := e.newRedis()
	defer rdb.Close()

	q := `SELECT id, txid, changed_at, schema_name, table_name, action, key, data, changes
		FROM ` + naiveOutbox + ` WHERE txid = $1 AND id = $2`
	var buf []byte
	start := time.Now()
	for _, k := range keys {
		var (
			ev     relay.Event
			action string
		)
		if err := conn.QueryRow(ctx, q, k.txid, k.id).Scan(&ev.ID, &ev.Txid, &ev.Timestamp,
			&ev.Schema, &ev.Table, &action, &ev.Key, &ev.Data, &ev.Changes); err != nil {
			return 0, fmt.Errorf("naive select: %w", err)
		}
		ev.Action = relay.Action(action)
		buf = ev.AppendJSON(buf[:0])
		if err := rdb.Publish(ctx, ev.Channel(), buf).Err(); err != nil {
			return 0, fmt.Errorf("naive publish: %w", err)
		}
	}
	at, err := sub.wait(ctx, int64(len(keys)), drainTimeout(n))
	if err != nil {
		return 0, err
	}
	return rate(int64(len(keys)), at.Sub(start)), nil
}
