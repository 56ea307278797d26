package testenv

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// StreamEventIDs returns the event_id of every entry of a Redis stream the
// relay appended to, in stream order, failing the test on an entry without
// an event field of pgrelay's JSON.
func StreamEventIDs(t testing.TB, ctx context.Context, rdb redis.UniversalClient, stream string) []int64 {
	t.Helper()
	entries, err := rdb.XRange(ctx, stream, "-", "+").Result()
	require.NoError(t, err)
	ids := make([]int64, len(entries))
	for i, e := range entries {
		raw, ok := e.Values["event"].(string)
		require.True(t, ok, "stream %s entry %s has no event field: %v", stream, e.ID, e.Values)
		var ev struct {
			EventID int64 `json:"event_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(raw), &ev), "stream %s entry %s", stream, e.ID)
		ids[i] = ev.EventID
	}
	return ids
}
