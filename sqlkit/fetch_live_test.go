package sqlkit_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// TestFetchLiveAgreesWithFull checks the live fetch (fetch_live.sql)
// against the full one (fetch_batch.sql): wherever the live one answers,
// it gives the same events, and the cursor advances to the same place. The
// outbox is still while both read, so they see the same transactions;
// between reads a script commits transactions of one to three statements,
// rolls some back, keeps one that inserts open across reads now and then
// (a pending or a fresh transaction, later committed), and writes
// statements large enough for several chunks, while the batch size varies.
func TestFetchLiveAgreesWithFull(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE items (id bigserial PRIMARY KEY, v int NOT NULL);
		INSERT INTO items (v) SELECT 0 FROM generate_series(1, 20);`)
	_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "items"})
	require.NoError(t, err)
	conn := mustConn(t, ctx, pool)
	rng := rand.New(rand.NewPCG(3, 5))

	statement := func() string {
		switch rng.IntN(4) {
		case 0:
			return fmt.Sprintf(`UPDATE items SET v = v + 1 WHERE id = %d`, 1+rng.IntN(20))
		case 1:
			return `INSERT INTO items (v) SELECT g FROM generate_series(1, 3) g`
		default:
			return `INSERT INTO items (v) VALUES (1)`
		}
	}

	var (
		c                 sqlkit.Cursor
		open              pgx.Tx
		commitNext        bool
		compared, refused int
		pending           int // of the compared, with pending transactions
		fresh             int // and with fresh ones (see fetch_live.sql)
		events            int
	)
	for step := 0; step < 1000 || open != nil; step++ {
		switch k := rng.IntN(12); {
		case commitNext:
			// Half of the time with a row above the mark too.
			if rng.IntN(2) == 0 {
				_, err := open.Exec(ctx, `INSERT INTO items (v) VALUES (10)`)
				require.NoError(t, err)
			}
			require.NoError(t, open.Commit(ctx))
			open, commitNext = nil, false
		case k < 5:
			err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				for range 1 + rng.IntN(3) {
					if _, err := tx.Exec(ctx, statement()); err != nil {
						return err
					}
				}
				if rng.IntN(6) == 0 {
					return errRollback
				}
				return nil
			})
			if !errors.Is(err, errRollback) {
				require.NoError(t, err)
			}
		case k == 5 && open == nil:
			open, err = pool.Begin(ctx)
			require.NoError(t, err)
			// Inserts only: an UPDATE would hold a row lock that the
			// next transactions wait for.
			_, err = open.Exec(ctx, `INSERT INTO items (v) SELECT g FROM generate_series(1, 1 + $1::int) g`, rng.IntN(3))
			require.NoError(t, err)
		case k == 5 || k == 6 && open != nil && step > 1000:
			require.NoError(t, open.Commit(ctx))
			open = nil
		case k >= 8 && k <= 9 && open == nil:
			// Open a transaction that writes before another that took
			// its txid earlier, and that commits first: while it stays
			// open, a read's snapshot may leave it out of its
			// in-progress list (its txid is above the snapshot's xmax)
			// with its row below the next mark, so that it is found as
			// a fresh transaction when it commits.
			early, err := pool.Begin(ctx)
			require.NoError(t, err)
			_, err = early.Exec(ctx, `SELECT pg_current_xact_id()`)
			require.NoError(t, err)
			open, err = pool.Begin(ctx)
			require.NoError(t, err)
			_, err = open.Exec(ctx, `INSERT INTO items (v) VALUES (8)`)
			require.NoError(t, err)
			_, err = early.Exec(ctx, `INSERT INTO items (v) VALUES (9)`)
			require.NoError(t, err)
			require.NoError(t, early.Commit(ctx))
			// Committed right after the next read, before a later
			// transaction can end and put it in a snapshot's list.
			// Whether that read's snapshot leaves it out depends on
			// every database of the server (a later transaction of
			// another test's that ended first puts it in the list), so
			// this is tried often.
			commitNext = true
		case k == 7 && rng.IntN(8) == 0:
			_, err := pool.Exec(ctx, `INSERT INTO items (v) SELECT g FROM generate_series(1, 2500) g`)
			require.NoError(t, err)
		}

		limit := 1 + rng.IntN(8)
		if rng.IntN(10) == 0 {
			limit = 1000
		}
		full, err := sqlkit.FetchFull(ctx, conn, c, limit, nil)
		require.NoError(t, err)
		if c.Live() {
			live, ok, err := sqlkit.FetchLive(ctx, conn, c, limit)
			require.NoError(t, err)
			if ok {
				compared++
				if len(c.Pending) > 0 {
					pending++
				}
				for _, r := range live.Rows {
					if r.Txid >= c.NextTxid && r.ID <= c.Mark {
						fresh++
						break
					}
				}
				require.Equal(t, full.Rows, live.Rows, "step %d: the events", step)
				require.Equal(t, full.Full, live.Full, "step %d: whether the batch is full", step)
				// The snapshots differ in the transactions of other
				// databases, which the cursor lists too.
				live.Snapshot = full.Snapshot
				require.Equal(t, fmt.Sprintf("%+v", c.Advance(full)), fmt.Sprintf("%+v", c.Advance(live)),
					"step %d: the next cursor", step)
			} else {
				refused++
			}
		}
		events += len(full.Rows)
		c = c.Advance(full)
	}
	t.Logf("%d live fetches agreed with full ones (%d with pending transactions, %d with fresh ones), %d refused; %d events",
		compared, pending, fresh, refused, events)
	require.Greater(t, compared, 100, "the live fetch answered often")
	require.Positive(t, pending, "with pending transactions too")
	require.Positive(t, fresh, "and with fresh ones")
	require.Positive(t, refused, "and refused some")
}
