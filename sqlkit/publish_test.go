package sqlkit_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// messages returns the custom events in the outbox, as "channel payload".
func messages(t *testing.T, db sqlkit.DB) []string {
	t.Helper()
	ctx := testenv.Context(t)
	rows, _ := db.Query(ctx, `SELECT table_name || ' ' || data::text FROM cdc.outbox WHERE action = 'message' ORDER BY id`)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

// TestPublishIsTransactional: a custom event is written if and only if the
// transaction (or savepoint) that published it commits, in order with the
// transaction's row events.
func TestPublishIsTransactional(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, `CREATE TABLE orders (id int PRIMARY KEY, state text)`)
	_, err := sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "orders"})
	require.NoError(t, err)

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO orders VALUES (42, 'new')`)
	require.NoError(t, err)
	require.NoError(t, sqlkit.Publish(ctx, tx, "orders.shipped", map[string]int{"order_id": 42}))
	_, err = tx.Exec(ctx, `UPDATE orders SET state = 'shipped'`)
	require.NoError(t, err)
	// A savepoint rolled back takes its event with it.
	_, err = tx.Exec(ctx, `SAVEPOINT s; SELECT cdc.publish('orders.cancelled', '{"order_id": 42}'); ROLLBACK TO SAVEPOINT s`)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))

	rolledBack, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, sqlkit.Publish(ctx, rolledBack, "orders.lost", json.RawMessage(`{"order_id": 1}`)))
	require.NoError(t, rolledBack.Rollback(ctx))

	require.Equal(t, []string{`orders.shipped {"order_id": 42}`}, messages(t, pool))
	rows, _ := pool.Query(ctx, `SELECT action FROM cdc.events ORDER BY id`)
	actions, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"insert", "message", "update"}, actions, "in the transaction's order")
}

func TestPublishRefusesBadInput(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, "")
	for _, tc := range []struct {
		sql  string
		want string
	}{
		{`SELECT cdc.publish('', '{}')`, "cdc.publish: the channel must not be empty"},
		{`SELECT cdc.publish(NULL, '{}')`, "cdc.publish: the channel must not be empty"},
		{`SELECT cdc.publish(repeat('x', 257), '{}')`, "cdc.publish: the channel is 257 bytes long, the most is 256"},
		{`SELECT cdc.publish('c', NULL)`, "cdc.publish: the payload must not be NULL"},
		{`SELECT cdc.publish('c', 'not json')`, "invalid input syntax for type json"},
	} {
		_, err := pool.Exec(ctx, tc.sql)
		require.ErrorContains(t, err, tc.want, tc.sql)
	}
	err := sqlkit.Publish(ctx, pool, "c", func() {})
	require.ErrorContains(t, err, "marshal the payload")
	require.ErrorContains(t, sqlkit.Publish(ctx, pool, strings.Repeat("é", 129), 1), "258 bytes long")
	require.Empty(t, messages(t, pool), "nothing written")
}

// TestPublishNeedsAGrant: PUBLIC may not publish; a role granted EXECUTE
// may, with no other privilege on cdc.
func TestPublishNeedsAGrant(t *testing.T) {
	t.Parallel()
	ctx, pool := setup(t, "")
	role := testenv.UniqueName("writer_")
	_, err := pool.Exec(ctx, `CREATE ROLE `+role)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = pool.Exec(ctx, `DROP OWNED BY `+role+`; DROP ROLE `+role) })
	_, err = pool.Exec(ctx, `GRANT USAGE ON SCHEMA cdc TO `+role)
	require.NoError(t, err)

	publishAs := func() error {
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer tx.Rollback(ctx) //nolint:errcheck
		if _, err := tx.Exec(ctx, `SET LOCAL ROLE `+role); err != nil {
			return err
		}
		if err := sqlkit.Publish(ctx, tx, "audit", "hello"); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	require.ErrorContains(t, publishAs(), "permission denied for function publish")
	_, err = pool.Exec(ctx, `GRANT EXECUTE ON FUNCTION cdc.publish(text, jsonb) TO `+role)
	require.NoError(t, err)
	require.NoError(t, publishAs())
	require.Equal(t, []string{`audit "hello"`}, messages(t, pool))
}
