package sqlkit

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

// MigrateTo lets tests start from an older schema version.
var MigrateTo = migrateTo

// FetchFull reads as Fetch does, always with fetch_batch.sql.
var FetchFull = fetchFull

// FetchLive reads as Fetch does, with fetch_live.sql only; ok is false
// where that query cannot answer.
func FetchLive(ctx context.Context, conn *pgx.Conn, c Cursor, limit int) (b Batch, ok bool, err error) {
	b, err = fetchLive(ctx, conn, c, limit, nil)
	if errors.Is(err, errNotLive) {
		return b, false, nil
	}
	return b, err == nil, err
}

// Live tells whether Fetch would try fetch_live.sql first for c.
func (c Cursor) Live() bool { return c.live() }
