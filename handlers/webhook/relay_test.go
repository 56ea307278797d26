package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/handlers/webhook"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// TestRelayParksRefusedEventsAndRetriesFailures runs a relay into the
// webhook: the endpoint fails once with a 500 (retried, nothing lost) and
// refuses the row with id 2 with a 400 every time, so that event is parked
// in cdc.failed_event after MaxAttempts tries, while the others, later ones
// included, are delivered.
func TestRelayParksRefusedEventsAndRetriesFailures(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	dbURL := testenv.NewMigratedDatabase(t)
	pool := testenv.Pool(t, dbURL)
	_, err := pool.Exec(ctx, `CREATE TABLE items (id bigint PRIMARY KEY, v text)`)
	require.NoError(t, err)
	_, err = sqlkit.EnsureCDCFor(ctx, pool, sqlkit.Table{Name: "items"})
	require.NoError(t, err)

	poison := []byte(`"id":2,`)
	rec, srv := serve(t, func(n int, r request, w http.ResponseWriter) {
		switch {
		case n == 0:
			http.Error(w, "try again", http.StatusInternalServerError)
		case bytes.Contains(r.body, poison):
			http.Error(w, "item 2 is invalid", http.StatusBadRequest)
		}
	})
	h := newHandler(t, webhook.Config{URL: srv.URL, BatchSize: 2})

	r, err := relay.New(relay.Config{
		DatabaseURL: dbURL, Name: "wh", MaxAttempts: 2,
		RetryInterval: 50 * time.Millisecond, WatchdogInterval: 200 * time.Millisecond,
		Timeout: 2 * time.Second, PollInterval: time.Hour,
	}, h)
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	t.Cleanup(func() { require.NoError(t, r.Close(context.Background())) })

	_, err = pool.Exec(ctx, `INSERT INTO items SELECT g, 'x' FROM generate_series(1, 4) g`)
	require.NoError(t, err)

	// delivered returns the row ids of the requests answered 2xx.
	delivered := func() []int64 {
		var ids []int64
		for i, req := range rec.requests() {
			if i == 0 || bytes.Contains(req.body, poison) {
				continue
			}
			var rows []struct {
				ID int64 `json:"id"`
			}
			require.NoError(t, json.Unmarshal(req.body, &rows))
			for _, row := range rows {
				ids = append(ids, row.ID)
			}
		}
		slices.Sort(ids)
		return slices.Compact(ids)
	}
	require.Eventually(t, func() bool { return slices.Equal(delivered(), []int64{1, 3, 4}) },
		time.Minute, 10*time.Millisecond)

	var errText string
	var attempts int
	require.Eventually(t, func() bool {
		return pool.QueryRow(ctx, `SELECT error, attempts FROM cdc.failed_event WHERE key = '2'`).
			Scan(&errText, &attempts) == nil
	}, time.Minute, 10*time.Millisecond)
	require.Contains(t, errText, "400 Bad Request")
	require.Contains(t, errText, "item 2 is invalid")
	require.Equal(t, 2, attempts)

	// Later events flow.
	_, err = pool.Exec(ctx, `INSERT INTO items VALUES (5, 'y')`)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return slices.Equal(delivered(), []int64{1, 3, 4, 5}) },
		time.Minute, 10*time.Millisecond)

	// Every request named the relay.
	for _, req := range rec.requests() {
		require.Regexp(t, `^wh:\d+-\d+$`, req.header.Get("X-Pgrelay-Delivery"))
	}
}
