package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// collector records delivered events and lifecycle calls.
type collector struct {
	mu       sync.Mutex
	events   []relay.Event
	changed  chan struct{}
	starts   atomic.Int32
	connects atomic.Int32
	closes   atomic.Int32
	// failNext, when set, is consulted before each event is accepted.
	failNext func(relay.Event) error
}

func newCollector() *collector { return &collector{changed: make(chan struct{}, 1)} }

func (c *collector) OnStart(context.Context) error { c.starts.Add(1); return nil }
func (c *collector) OnConnect(context.Context) error {
	c.connects.Add(1)
	c.signal()
	return nil
}
func (c *collector) OnClose(context.Context) error { c.closes.Add(1); return nil }

func (c *collector) OnEvent(_ context.Context, e relay.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failNext != nil {
		if err := c.failNext(e); err != nil {
			return err
		}
	}
	// Copy the JSON: the relay reuses its buffers.
	e.Key = append(json.RawMessage(nil), e.Key...)
	e.Data = append(json.RawMessage(nil), e.Data...)
	e.Changes = append(json.RawMessage(nil), e.Changes...)
	c.events = append(c.events, e)
	c.signal()
	return nil
}

func (c *collector) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (c *collector) snapshot() []relay.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]relay.Event(nil), c.events...)
}

// waitUntil blocks until cond holds for the collector, failing the test when
// ctx ends first.
func (c *collector) waitUntil(t *testing.T, ctx context.Context, what string, cond func(events []relay.Event) bool) []relay.Event {
	t.Helper()
	for {
		ev := c.snapshot()
		if cond(ev) {
			return ev
		}
		select {
		case <-c.changed:
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s; have %d events", what, len(ev))
		}
	}
}

func (c *collector) waitCount(t *testing.T, ctx context.Context, n int) []relay.Event {
	t.Helper()
	return c.waitUntil(t, ctx, fmt.Sprintf("%d events", n), func(ev []relay.Event) bool { return len(ev) >= n })
}

// waitDelivered waits until the saved cursor of the relay called name
// (relay.DefaultName when empty) has nothing left to deliver. The cursor is
// saved after the handlers accepted a batch, and a relay only ever fetches
// from it (or from further on), so from then on no fetch can return an
// event again: what the handlers received is final. Call it once every
// transaction of interest has ended. The last thing the relay read must
// hold an event: a read of nothing but updates that changed nothing is not
// saved, and leaves them counted in the backlog.
func (f fixture) waitDelivered(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if name == "" {
		name = relay.DefaultName
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		cur, err := sqlkit.LoadCursor(ctx, f.pool, name)
		if ctx.Err() == nil {
			require.NoError(t, err)
		}
		n, _, err := sqlkit.Backlog(ctx, f.pool, cur)
		if ctx.Err() == nil {
			require.NoError(t, err)
		}
		if err == nil && n == 0 {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("timed out waiting for relay %q to save a cursor with nothing left to deliver (%d events left)", name, n)
		}
	}
}

// waitExactly waits for n events, then until the default relay has nothing
// left to deliver, and asserts that exactly those n events arrived, none
// twice. It returns them.
func (f fixture) waitExactly(t *testing.T, ctx context.Context, c *collector, n int) []relay.Event {
	t.Helper()
	c.waitCount(t, ctx, n)
	f.waitDelivered(t, ctx, "")
	events := c.snapshot()
	requireNoDuplicates(t, events)
	require.Len(t, events, n, "exactly the events written, once the relay has nothing left to deliver")
	return events
}

// requireNoDuplicates asserts that no event id was delivered twice, naming
// the ones that were.
func requireNoDuplicates(t *testing.T, events []relay.Event) {
	t.Helper()
	seen := make(map[int64]int, len(events))
	var dup []int64
	for _, e := range events {
		seen[e.ID]++
		if seen[e.ID] == 2 {
			dup = append(dup, e.ID)
		}
	}
	if len(dup) == 0 {
		return
	}
	slices.Sort(dup)
	var b strings.Builder
	for i, id := range dup {
		if i == 10 {
			fmt.Fprintf(&b, ", … (%d ids in all)", len(dup))
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d (%d times)", id, seen[id])
	}
	t.Fatalf("%d deliveries of %d distinct events; delivered more than once: %s", len(events), len(seen), b.String())
}

// fixture is a migrated database with a CDC-enabled table "items".
type fixture struct {
	url  string
	pool *pgxpool.Pool
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	ctx := testenv.Context(t)
	url := testenv.NewMigratedDatabase(t)
	pool := testenv.Pool(t, url)
	_, err := pool.Exec(ctx, `CREATE TABLE items (id bigint PRIMARY KEY, v text)`)
	require.NoError(t, err)
	_, err = sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "items"})
	require.NoError(t, err)
	return fixture{url: url, pool: pool}
}

// startRelay starts a relay with fast timings and closes it with the test.
func (f fixture) startRelay(t *testing.T, cfg relay.Config, handlers ...relay.EventHandler) *relay.Relay {
	t.Helper()
	cfg.DatabaseURL = f.url
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = 50 * time.Millisecond
	}
	if cfg.WatchdogInterval == 0 {
		cfg.WatchdogInterval = 200 * time.Millisecond
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.PollInterval == 0 {
		// Long, so that a missed wake-up fails the test instead of being
		// covered up by the safety-net poll.
		cfg.PollInterval = time.Hour
	}
	r, err := relay.New(cfg, handlers...)
	require.NoError(t, err)
	require.NoError(t, r.Start(testenv.Context(t)))
	t.Cleanup(func() { require.NoError(t, r.Close(context.Background())) })
	return r
}

func (f fixture) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	_, err := f.pool.Exec(context.Background(), sql, args...)
	require.NoError(t, err)
}

// TestRelayDeliversChangesInOrder: an insert, an update and a delete arrive
// once each, in the order they were made, with their keys, row images and
// changed columns.
func TestRelayDeliversChangesInOrder(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	c := newCollector()
	f.startRelay(t, relay.Config{}, c)

	f.exec(t, `INSERT INTO items VALUES (1, 'a'), (2, 'b')`)
	f.exec(t, `UPDATE items SET v = 'z' WHERE id = 1`)
	f.exec(t, `DELETE FROM items WHERE id = 2`)
	events := f.waitExactly(t, ctx, c, 4)

	type short struct {
		Action         relay.Action
		Key, Data, Chg string
	}
	var got []short
	for _, e := range events {
		require.Equal(t, "public", e.Schema)
		require.Equal(t, "items", e.Table)
		require.WithinDuration(t, time.Now(), e.Timestamp, time.Minute)
		got = append(got, short{e.Action, string(e.Key), string(e.Data), string(e.Changes)})
	}
	require.Equal(t, []short{
		{relay.ActionInsert, "1", `{"id":1,"v":"a"}`, ""},
		{relay.ActionInsert, "2", `{"id":2,"v":"b"}`, ""},
		{relay.ActionUpdate, "1", `{"id":1,"v":"z"}`, `[{"field":"v","old":"a","new":"z"}]`},
		{relay.ActionDelete, "2", `{"id":2,"v":"b"}`, ""},
	}, got)
	require.Equal(t, events[0].ID+1, events[1].ID, "one statement's events have consecutive ids")
	require.Equal(t, events[0].Txid, events[1].Txid, "one statement, one transaction")
	require.NotEqual(t, events[1].Txid, events[2].Txid)
	require.EqualValues(t, 1, c.starts.Load())
	require.EqualValues(t, 1, c.connects.Load())
}

// TestRelayDeliversBacklogWrittenWhileDown: what was written while no relay
// ran, in several transactions and more than one batch, is delivered when a
// relay starts, each event once, and nothing the first relay delivered is
// delivered again.
func TestRelayDeliversBacklogWrittenWhileDown(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)

	// A first relay delivers some events, then stops.
	first := newCollector()
	r, err := relay.New(relay.Config{DatabaseURL: f.url}, first)
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	f.exec(t, `INSERT INTO items SELECT g, 'before' FROM generate_series(1, 10) g`)
	first.waitCount(t, ctx, 10)
	require.NoError(t, r.Close(ctx))
	require.EqualValues(t, 1, first.closes.Load())
	// Closed, the first relay delivers nothing more.
	requireNoDuplicates(t, first.snapshot())
	require.Len(t, first.snapshot(), 10)

	// Written while no relay runs, in several transactions and more than
	// one batch.
	for i := range 5 {
		f.exec(t, `INSERT INTO items SELECT g, 'down' FROM generate_series($1::bigint, $1 + 99) g`, 100+i*100)
	}

	second := newCollector()
	f.startRelay(t, relay.Config{BatchSize: 7}, second)
	events := f.waitExactly(t, ctx, second, 500)
	for _, e := range events {
		require.Contains(t, string(e.Data), `"down"`)
	}
}

// TestRelaySurvivesTerminatedConnections kills each of the relay's
// connections in turn while events are written: the relay reconnects
// (OnConnect each time) and every event arrives, at most a batch of them
// again per reconnect.
func TestRelaySurvivesTerminatedConnections(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	c := newCollector()
	f.startRelay(t, relay.Config{BatchSize: 50}, c)

	const rounds, perRound = 6, 50
	for round := range rounds {
		f.exec(t, `INSERT INTO items SELECT g, 'x' FROM generate_series($1::bigint, $1 + $2 - 1) g`, round*perRound, perRound)
		// Kill each of the relay's connections in turn, the LISTEN one
		// included, and wait for the reconnect.
		roles := []string{"pgrelay listener", "pgrelay watchdog", "pgrelay worker"}
		role := roles[round%len(roles)]
		before := c.connects.Load()
		var killed int
		require.NoError(t, f.pool.QueryRow(ctx,
			`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`,
			role).Scan(&killed))
		require.Equal(t, 1, killed, role)
		f.exec(t, `INSERT INTO items SELECT g, 'y' FROM generate_series($1::bigint, $1 + $2 - 1) g`, 10000+round*perRound, perRound)
		c.waitUntil(t, ctx, "reconnect", func([]relay.Event) bool { return c.connects.Load() > before })
	}
	// Delivery is at least once: a batch in flight when its connection
	// died is delivered again, so count distinct events.
	distinct := func(events []relay.Event) map[int64]bool {
		seen := map[int64]bool{}
		for _, e := range events {
			seen[e.ID] = true
		}
		return seen
	}
	c.waitUntil(t, ctx, "every event", func(ev []relay.Event) bool {
		return len(distinct(ev)) == 2*rounds*perRound
	})
	// Counted once the relay has nothing left to deliver, so that a
	// repeat arriving late counts too.
	f.waitDelivered(t, ctx, "")
	events := c.snapshot()
	require.Len(t, distinct(events), 2*rounds*perRound, "no event that was not written")
	require.LessOrEqual(t, len(events)-2*rounds*perRound, rounds*50, "at most one batch again per reconnect")
	t.Logf("%d events delivered twice over %d reconnects", len(events)-2*rounds*perRound, rounds)
	require.GreaterOrEqual(t, int(c.connects.Load()), rounds+1)
}

// TestRelayOutOfOrderCommits runs concurrent writers whose transactions
// commit in a different order than their outbox ids, some rolling back, and
// checks that exactly the committed events are delivered (cdc.events computes
// them in SQL, including which updates changed nothing).
func TestRelayOutOfOrderCommits(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	c := newCollector()
	f.startRelay(t, relay.Config{BatchSize: 16}, c)

	const writers, txPerWriter = 16, 15
	var (
		mu        sync.Mutex
		committed = map[int64]bool{}
		wg        sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range txPerWriter {
				base := int64(w*1000 + i*10)
				err := pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
					for k := range 1 + rng.IntN(3) {
						if _, err := tx.Exec(ctx, `INSERT INTO items VALUES ($1, 'v')`, base+int64(k)); err != nil {
							return err
						}
						time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
					}
					// An update of those rows, which changes them or (when
					// it sets 'v' again) nothing, and so gives no event.
					if _, err := tx.Exec(ctx, `UPDATE items SET v = $2 WHERE id BETWEEN $1 AND $1 + 2`,
						base, []string{"v", "w"}[rng.IntN(2)]); err != nil {
						return err
					}
					if rng.IntN(4) == 0 {
						return errRollback
					}
					return nil
				})
				if errors.Is(err, errRollback) {
					continue
				}
				require.NoError(t, err)
			}
		})
	}
	wg.Wait()
	// A last transaction with an event, so that the relay's last read
	// holds an event and the cursor it saves is past every writer's rows
	// (a read of nothing but updates that changed nothing is not saved;
	// see waitDelivered).
	f.exec(t, `INSERT INTO items VALUES (-1, 'last')`)
	rows, err := f.pool.Query(ctx, `SELECT id FROM cdc.events`)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	for _, id := range ids {
		committed[id] = true
	}
	mu.Lock()
	defer mu.Unlock()
	events := f.waitExactly(t, ctx, c, len(committed))
	delivered := map[int64]bool{}
	for _, e := range events {
		delivered[e.ID] = true
	}
	require.Equal(t, committed, delivered)
}

var errRollback = errors.New("roll back on purpose")

// TestRelayIsNotHeldBackByLongTransaction: while a write transaction stays
// open, later transactions are delivered, and nothing of the open one; once
// it commits, its event follows, and nothing arrives twice.
func TestRelayIsNotHeldBackByLongTransaction(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	c := newCollector()
	f.startRelay(t, relay.Config{}, c)

	long, err := f.pool.Begin(ctx)
	require.NoError(t, err)
	defer long.Rollback(ctx) //nolint:errcheck
	_, err = long.Exec(ctx, `INSERT INTO items VALUES (1, 'long')`)
	require.NoError(t, err)

	// Later transactions are delivered while the long one stays open.
	for i := range 20 {
		f.exec(t, `INSERT INTO items VALUES ($1, 'short')`, 100+i)
	}
	f.waitExactly(t, ctx, c, 20)

	require.NoError(t, long.Commit(ctx))
	events := f.waitExactly(t, ctx, c, 21)
	require.Equal(t, "1", string(events[20].Key))
}

// TestRelayRetriesFailingHandlers: a handler that fails twice and then
// panics has the event retried, never skipped, and the events it accepted
// are not delivered again.
func TestRelayRetriesFailingHandlers(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	c := newCollector()
	var failures atomic.Int32
	c.failNext = func(e relay.Event) error {
		switch failures.Add(1) {
		case 1, 2:
			return errors.New("downstream unavailable")
		case 3:
			panic("handler bug")
		}
		return nil
	}
	f.startRelay(t, relay.Config{}, c)
	f.exec(t, `INSERT INTO items SELECT g, 'x' FROM generate_series(1, 3) g`)
	events := f.waitExactly(t, ctx, c, 3) // a failure is retried, never skipped, and accepted events are not repeated
	require.Equal(t, "1", string(events[0].Key))
}

// TestRelayStandbyTakesOver: a second relay with the same name stands by
// while the first delivers, and takes over where it stopped, delivering
// nothing the first had delivered.
func TestRelayStandbyTakesOver(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	active, standby := newCollector(), newCollector()
	r1, err := relay.New(relay.Config{DatabaseURL: f.url, RetryInterval: 50 * time.Millisecond}, active)
	require.NoError(t, err)
	require.NoError(t, r1.Start(ctx))
	active.waitUntil(t, ctx, "first relay connected", func([]relay.Event) bool { return active.connects.Load() == 1 })
	f.exec(t, `INSERT INTO items VALUES (1, 'x')`)
	active.waitCount(t, ctx, 1)

	f.startRelay(t, relay.Config{}, standby)
	f.exec(t, `INSERT INTO items VALUES (2, 'x')`)
	active.waitCount(t, ctx, 2)
	require.NoError(t, r1.Close(ctx))

	f.exec(t, `INSERT INTO items VALUES (3, 'x')`)
	events := f.waitExactly(t, ctx, standby, 1)
	require.Equal(t, "3", string(events[0].Key), "the standby starts where the active relay stopped")
	requireNoDuplicates(t, active.snapshot())
	require.Len(t, active.snapshot(), 2)
}

func TestRelayGivesUpAfterRetryAttempts(t *testing.T) {
	t.Parallel()
	for _, withOnError := range []bool{false, true} {
		t.Run(fmt.Sprintf("OnError=%v", withOnError), func(t *testing.T) {
			t.Parallel()
			ctx := testenv.Context(t)
			f := newFixture(t)
			c := newCollector()
			acts := newActivitySignal()
			onError := make(chan error, 2)
			cfg := relay.Config{
				DatabaseURL:   f.url,
				RetryAttempts: 3,
				RetryInterval: 50 * time.Millisecond,
				Observer:      acts.observe,
			}
			if withOnError {
				cfg.OnError = func(err error) { onError <- err }
			}
			r, err := relay.New(cfg, c)
			require.NoError(t, err)
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			c.waitUntil(t, ctx, "connected", func([]relay.Event) bool { return c.connects.Load() == 1 })

			// Make every reconnection fail: the database refuses new
			// connections, and the relay's are ended.
			admin := testenv.Pool(t, testenv.AdminURL())
			_, err = admin.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{dbName(t, f)}.Sanitize()+` ALLOW_CONNECTIONS false`)
			require.NoError(t, err)
			lost := time.Now()
			f.exec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'pgrelay %'`)

			var runErr error
			select {
			case runErr = <-done:
			case <-ctx.Done():
				t.Fatal("Run did not return")
			}
			require.Equal(t, 3, acts.count(relay.ActivityReconnectFailed), "exactly RetryAttempts attempts")
			t.Logf("gave up %s after losing the connection (3 attempts, %s apart)", time.Since(lost).Round(time.Millisecond), cfg.RetryInterval)
			if withOnError {
				require.NoError(t, runErr)
				require.ErrorContains(t, <-onError, "giving up after 3 reconnection attempts")
				require.Empty(t, onError, "OnError is called once")
			} else {
				require.ErrorContains(t, runErr, "giving up after 3 reconnection attempts")
			}
			require.EqualValues(t, 1, c.closes.Load())
		})
	}
}

func dbName(t *testing.T, f fixture) string {
	var name string
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT current_database()`).Scan(&name))
	return name
}

func TestStartFailsFast(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	url := testenv.NewDatabase(t) // not migrated
	c := newCollector()
	r, err := relay.New(relay.Config{DatabaseURL: url}, c)
	require.NoError(t, err)
	require.ErrorIs(t, r.Start(ctx), sqlkit.ErrNotMigrated)
	require.EqualValues(t, 1, c.closes.Load(), "handlers started are closed again")

	r, err = relay.New(relay.Config{DatabaseURL: "postgres://nobody:secret@127.0.0.1:1/db?sslmode=disable", Timeout: time.Second})
	require.NoError(t, err)
	err = r.Start(ctx)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "secret")
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  relay.Config
		want string
	}{
		{"missing url", relay.Config{}, "Config.DatabaseURL is required"},
		{"bad url", relay.Config{DatabaseURL: "postgres://u:secret@host:notaport/db"}, "Config.DatabaseURL"},
		{"batch too big", relay.Config{DatabaseURL: "postgres://localhost/db", BatchSize: relay.MaxBatchSize + 1}, "Config.BatchSize"},
		{"negative batch", relay.Config{DatabaseURL: "postgres://localhost/db", BatchSize: -1}, "Config.BatchSize"},
		{"negative timeout", relay.Config{DatabaseURL: "postgres://localhost/db", Timeout: -time.Second}, "Config.Timeout"},
		{"negative watchdog", relay.Config{DatabaseURL: "postgres://localhost/db", WatchdogInterval: -1}, "Config.WatchdogInterval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := relay.New(tt.cfg)
			require.ErrorContains(t, err, tt.want)
			require.NotContains(t, err.Error(), "secret")
		})
	}
}

// TestRelayPrunesDeliveredEvents: with a tiny retention, the relay deletes
// what it delivered, in batches, until the outbox is empty.
func TestRelayPrunesDeliveredEvents(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	c := newCollector()
	f.startRelay(t, relay.Config{Retention: time.Nanosecond, PollInterval: 10 * time.Millisecond}, c)
	f.exec(t, `INSERT INTO items SELECT g, 'x' FROM generate_series(1, 2500) g`)
	c.waitCount(t, ctx, 2500)
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, f.pool.QueryRow(ctx, `SELECT count(*) FROM cdc.outbox`).Scan(&n))
		return n == 0
	}, time.Minute, 10*time.Millisecond)
	// With the outbox empty, nothing can be delivered again.
	requireNoDuplicates(t, c.snapshot())
	require.Len(t, c.snapshot(), 2500)
}

// TestRelayParksPermanentlyRefusedEvents: an event a handler refuses with a
// permanent error is tried MaxAttempts times, then parked in
// cdc.failed_event with its error and attempt count while the others flow;
// re-queued, it is delivered.
func TestRelayParksPermanentlyRefusedEvents(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	c := newCollector()
	var poisonTries atomic.Int32
	c.failNext = func(e relay.Event) error {
		if string(e.Key) == "2" {
			poisonTries.Add(1)
			return relay.Permanent(errors.New("invalid order"))
		}
		return nil
	}
	f.startRelay(t, relay.Config{MaxAttempts: 2}, c)
	f.exec(t, `INSERT INTO items SELECT g, 'x' FROM generate_series(1, 4) g`)
	events := f.waitExactly(t, ctx, c, 3)
	var keys []string
	for _, e := range events {
		keys = append(keys, string(e.Key))
	}
	require.Equal(t, []string{"1", "3", "4"}, keys, "the rest keep flowing")
	require.EqualValues(t, 2, poisonTries.Load(), "tried MaxAttempts times")

	// The parked event is recorded with the batch's progress, just after
	// the handlers are done with the batch.
	var handler, errText string
	var attempts int
	require.Eventually(t, func() bool {
		return f.pool.QueryRow(ctx, `SELECT handler, error, attempts FROM cdc.failed_event WHERE key = '2'`).
			Scan(&handler, &errText, &attempts) == nil
	}, time.Minute, 5*time.Millisecond)
	require.Contains(t, errText, "invalid order")
	require.Equal(t, 2, attempts)
	n, err := sqlkit.FailedCount(ctx, f.pool, relay.DefaultName)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)

	// Fixed downstream: re-queued, the event is delivered.
	c.mu.Lock()
	c.failNext = nil
	c.mu.Unlock()
	n, err = sqlkit.RequeueFailed(ctx, f.pool, relay.DefaultName)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	events = f.waitExactly(t, ctx, c, 4)
	require.Equal(t, "2", string(events[3].Key))
	require.Contains(t, string(events[3].Data), `"id": 2`)
}

// batchRefuser is a batch handler that refuses any batch holding key 2.
type batchRefuser struct {
	*collector
	batches atomic.Int32
}

func (b *batchRefuser) OnEvents(ctx context.Context, events []relay.Event) error {
	b.batches.Add(1)
	for _, e := range events {
		if string(e.Key) == "2" {
			return relay.Permanent(errors.New("batch contains a bad event"))
		}
	}
	for _, e := range events {
		if err := b.OnEvent(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// TestRelayFindsThePermanentFailureInABatch: a batch handler that refuses
// a whole batch permanently has it retried one event at a time, so that
// only the event at fault is parked and the others are delivered once.
func TestRelayFindsThePermanentFailureInABatch(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	c := newCollector()
	c.failNext = func(e relay.Event) error {
		if string(e.Key) == "2" {
			return relay.Permanent(errors.New("bad event"))
		}
		return nil
	}
	h := &batchRefuser{collector: c}
	f.startRelay(t, relay.Config{MaxAttempts: 1}, h)
	f.exec(t, `INSERT INTO items SELECT g, 'x' FROM generate_series(1, 4) g`)
	f.waitExactly(t, ctx, c, 3)
	require.Eventually(t, func() bool {
		n, err := sqlkit.FailedCount(ctx, f.pool, relay.DefaultName)
		return err == nil && n == 1
	}, time.Minute, 5*time.Millisecond)
}
