package sqlkit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// TestFetchFollowsCommitOrder reads the outbox in small batches while
// concurrent writers increment shared counters, so that transactions wait on
// each other's row locks after taking their txids (some take one at their
// very start), some roll back, and one stays open across many batches. Every
// committed increment must be read exactly once, and for every counter in
// the order of the values it took: 1, 2, 3, ... with no gap and no
// repetition. The cursor is saved and loaded again after every batch, and
// half of the time the next batch starts from the loaded one, as a relay
// restarting between batches would.
func TestFetchFollowsCommitOrder(t *testing.T) {
	t.Parallel()
	for _, live := range []bool{true, false} {
		name := map[bool]string{true: "live", false: "backlog"}[live]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, pool := setup(t, `CREATE TABLE counters (id int PRIMARY KEY, v bigint NOT NULL);
				INSERT INTO counters SELECT g, 0 FROM generate_series(1, 6) g;
				CREATE TABLE notes (id bigserial PRIMARY KEY, counter int, v bigint);`)
			_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "counters"}, sqlkit.Table{Name: "notes"})
			require.NoError(t, err)

			r := &orderReader{conn: mustConn(t, ctx, pool), pool: pool, rng: rand.New(rand.NewPCG(7, uint64(len(name))))}
			done := make(chan struct{})
			var readErr error
			var wg sync.WaitGroup
			if live {
				wg.Go(func() {
					for {
						select {
						case <-done:
							return
						default:
						}
						if _, readErr = r.batch(ctx); readErr != nil {
							return
						}
					}
				})
			}
			runCounterWriters(t, ctx, pool)
			close(done)
			wg.Wait()
			require.NoError(t, readErr)
			for {
				full, err := r.batch(ctx)
				require.NoError(t, err)
				n, _, err := sqlkit.Backlog(ctx, pool, r.cursor)
				require.NoError(t, err)
				if !full && n == 0 {
					break
				}
			}
			r.check(t, ctx)
		})
	}
}

// runCounterWriters runs the writers of TestFetchFollowsCommitOrder to the
// end: 6 of them, each committing or rolling back 25 transactions of one to
// three increments (in counter order, so that they cannot deadlock), plus
// one transaction held open while the others run.
func runCounterWriters(t *testing.T, ctx context.Context, pool *pgxpool.Pool) {
	t.Helper()
	long, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer long.Rollback(ctx) //nolint:errcheck
	_, err = long.Exec(ctx, `INSERT INTO notes (counter, v) VALUES (0, 0)`)
	require.NoError(t, err)

	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for w := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for range 25 {
				ids := rng.Perm(6)[:1+rng.IntN(3)]
				slices.Sort(ids)
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					if rng.IntN(2) == 0 {
						// Take the txid before waiting for anyone.
						if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
							return err
						}
						time.Sleep(time.Duration(rng.IntN(2)) * time.Millisecond)
					}
					for _, id := range ids {
						var v int64
						if err := tx.QueryRow(ctx, `UPDATE counters SET v = v + 1 WHERE id = $1 RETURNING v`, id+1).Scan(&v); err != nil {
							return err
						}
						if _, err := tx.Exec(ctx, `INSERT INTO notes (counter, v) VALUES ($1, $2)`, id+1, v); err != nil {
							return err
						}
					}
					if rng.IntN(5) == 0 {
						return errRollback
					}
					return nil
				})
				if err != nil && !errors.Is(err, errRollback) {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, long.Commit(ctx))
}

var errRollback = errors.New("roll back on purpose")

// orderReader fetches batches of random small sizes and records the events.
type orderReader struct {
	conn   *pgx.Conn
	pool   *pgxpool.Pool
	rng    *rand.Rand
	cursor sqlkit.Cursor
	events []sqlkit.Row
}

func (r *orderReader) batch(ctx context.Context) (full bool, err error) {
	b, err := sqlkit.Fetch(ctx, r.conn, r.cursor, 1+r.rng.IntN(7), nil)
	if err != nil {
		return false, err
	}
	for _, row := range b.Rows {
		row.Key, row.Data, row.Changes = slices.Clone(row.Key), slices.Clone(row.Data), slices.Clone(row.Changes)
		r.events = append(r.events, row)
	}
	next := r.cursor.Advance(b)
	if err := sqlkit.SaveCursor(ctx, r.pool, "test", next); err != nil {
		return false, err
	}
	loaded, err := sqlkit.LoadCursor(ctx, r.pool, "test")
	if err != nil {
		return false, err
	}
	if fmt.Sprint(loaded.Mark, loaded.NextTxid, loaded.Pending, loaded.Partial) !=
		fmt.Sprint(next.Mark, next.NextTxid, next.Pending, next.Partial) {
		return false, fmt.Errorf("cursor saved as %+v, loaded as %+v", next, loaded)
	}
	// Go on from the loaded cursor half of the time, as a relay that
	// restarted would.
	r.cursor = next
	if r.rng.IntN(2) == 0 {
		r.cursor = loaded
	}
	return b.Full, nil
}

// check compares what was read with cdc.events and checks the order.
func (r *orderReader) check(t *testing.T, ctx context.Context) {
	t.Helper()
	rows, err := r.pool.Query(ctx, `SELECT id FROM cdc.events ORDER BY id`)
	require.NoError(t, err)
	want, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	var got []int64
	for _, e := range r.events {
		got = append(got, e.ID)
	}
	seen := map[int64]bool{}
	for _, id := range got {
		require.False(t, seen[id], "event %d read twice", id)
		seen[id] = true
	}
	slices.Sort(got)
	require.Equal(t, want, got, "exactly the committed events")

	// Each transaction's events together and in id order.
	done := map[uint64]bool{}
	for i, e := range r.events {
		if i > 0 && r.events[i-1].Txid == e.Txid {
			require.Greater(t, e.ID, r.events[i-1].ID)
			continue
		}
		require.False(t, done[e.Txid], "transaction %d's events are split", e.Txid)
		done[e.Txid] = true
	}

	// Every counter's values in the order they were taken.
	last := map[int64]int64{}
	for _, e := range r.events {
		var row struct{ ID, V, Counter int64 }
		require.NoError(t, json.Unmarshal(e.Data, &row))
		if e.Table == "counters" {
			require.Equal(t, last[row.ID]+1, row.V, "counter %d: event %d after value %d", row.ID, e.ID, last[row.ID])
			last[row.ID] = row.V
		}
	}
	var final []int64
	require.NoError(t, r.pool.QueryRow(ctx, `SELECT array_agg(v ORDER BY id) FROM counters`).Scan(&final))
	for i, v := range final {
		require.Equal(t, v, last[int64(i+1)], "counter %d", i+1)
	}
}
