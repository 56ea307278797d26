package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// side is one side of a write comparison: the same writes without CDC, with
// CDC and no relay, and with CDC while a relay delivers them.
type side struct {
	name  string // as reported
	cdc   bool   // whether the tables written have CDC
	relay bool   // whether a `relay run` process delivers meanwhile
}

// writeSides are the sides of every write comparison, in the order each
// round runs them.
var writeSides = []side{
	{name: "plain"},
	{name: "cdc", cdc: true},
	{name: "cdc+relay", cdc: true, relay: true},
}

// table is the run's table the side writes to in the run's database.
func (s side) table() string {
	if s.cdc {
		return "cdc"
	}
	return "plain"
}

// captureDB is a database with CDC that a relay can deliver from.
type captureDB struct {
	url  string
	pool *pgxpool.Pool
	// channel is what a subscriber subscribes to for every event written
	// there (a pattern when it holds a *).
	channel string
	// probe commits one event on channel, outside anything measured.
	probe func(ctx context.Context) error
}

// mainDB is the run's database and its cdc table. Its probe inserts a row of
// negative id, which no measurement uses.
func (e *env) mainDB() captureDB {
	return captureDB{url: e.dbURL, pool: e.pool, channel: e.channel(), probe: func(ctx context.Context) error {
		_, err := e.pool.Exec(ctx, e.insertOneSQL("cdc"), -e.probes.Add(1))
		return err
	}}
}

// startProbedRelay starts `relay run` connecting to url (db's, or a way
// there through a proxy) and returns once it has delivered one probe event
// to recv, which must have received nothing yet. The relay has then
// connected, read the outbox to its end and published, so that what follows
// measures it running rather than starting.
func (e *env) startProbedRelay(ctx context.Context, db captureDB, url string, recv receiver) (*relayProc, error) {
	proc, err := e.startRelayProcess(url)
	if err != nil {
		return nil, err
	}
	if err := db.probe(ctx); err != nil {
		proc.stop()
		return nil, fmt.Errorf("write the probe event: %w", err)
	}
	if _, err := recv.wait(ctx, 1, 30*time.Second); err != nil {
		proc.stop()
		return nil, fmt.Errorf("the relay did not deliver the probe event: %w", err)
	}
	return proc, nil
}

// onSide runs work, which writes on side s in db and returns how many
// events it wrote (on the cdc sides) and when it ended. On the relay side a
// `relay run` process delivers meanwhile, to a subscriber in this process,
// and onSide returns how long after work ended the subscriber had every
// event; a negative lag means the last event arrived before work had seen
// its last COMMIT return. On the cdc side without a relay onSide first makes
// sure that no relay is marked as waiting, as one would make the writers
// notify.
func (db captureDB) onSide(ctx context.Context, e *env, s side, work func() (int64, time.Time, error)) (time.Duration, error) {
	if !s.relay {
		if s.cdc {
			if err := noRelayWaiting(ctx, db.pool); err != nil {
				return 0, err
			}
		}
		_, _, err := work()
		return 0, err
	}
	sub, err := e.subscribe(ctx, db.channel)
	if err != nil {
		return 0, err
	}
	defer sub.close()
	proc, err := e.startProbedRelay(ctx, db, db.url, sub)
	if err != nil {
		return 0, err
	}
	defer proc.stop()
	n, end, err := work()
	if err != nil {
		return 0, err
	}
	at, err := sub.wait(ctx, 1+n, drainTimeout(n))
	if err != nil {
		return 0, fmt.Errorf("delivery of the %s side's events: %w", s.name, err)
	}
	if err := proc.running(); err != nil {
		return 0, err
	}
	return at.Sub(end), nil
}

// noRelayWaiting returns an error if the database's capture triggers would
// notify because a relay is marked as waiting: one that ended without
// saying it stopped waiting, which would make a side measured without a
// relay pay for notifications all the same.
func noRelayWaiting(ctx context.Context, pool *pgxpool.Pool) error {
	var waiting bool
	if err := pool.QueryRow(ctx, `SELECT pg_sequence_last_value('cdc.relay_wake_enter')
		> pg_sequence_last_value('cdc.relay_wake_leave')`).Scan(&waiting); err != nil {
		return fmt.Errorf("check that no relay is waiting: %w", err)
	}
	if waiting {
		return errors.New("a relay is still marked as waiting for notifications (cdc.relay_wake_enter is ahead of " +
			"cdc.relay_wake_leave), so writers would notify as if a relay ran: a relay ended without leaving")
	}
	return nil
}
