package sqlkit

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	sqlBacklogTables = query("backlog_tables")
	sqlFailedTables  = query("failed_tables")
	sqlLastDelivery  = query("last_delivery")
)

// TableCount is a number of events of one table (for custom events: Schema
// empty and Name the channel) and the change time of the oldest.
type TableCount struct {
	Table  Table
	Count  int64
	Oldest time.Time
}

// BacklogByTable is Backlog per table.
func BacklogByTable(ctx context.Context, db DB, c Cursor) ([]TableCount, error) {
	pending, partial, after, _ := c.args()
	rows, err := db.Query(ctx, sqlBacklogTables, c.Mark, c.NextTxid, pending, partial, after)
	if err != nil {
		return nil, fmt.Errorf("count undelivered events per table: %w", err)
	}
	return collectCounts(rows, "count undelivered events per table")
}

// FailedByTable counts the events parked for relay name, per table.
func FailedByTable(ctx context.Context, db DB, name string) ([]TableCount, error) {
	rows, err := db.Query(ctx, sqlFailedTables, name)
	if err != nil {
		return nil, fmt.Errorf("count failed events per table: %w", err)
	}
	return collectCounts(rows, "count failed events per table")
}

func collectCounts(rows pgx.Rows, doing string) ([]TableCount, error) {
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (TableCount, error) {
		var tc TableCount
		var oldest *time.Time
		err := row.Scan(&tc.Table.Schema, &tc.Table.Name, &tc.Count, &oldest)
		if oldest != nil {
			tc.Oldest = *oldest
		}
		return tc, err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", doing, err)
	}
	return out, nil
}

// LastDelivery returns when relay name last recorded delivered events; zero
// when it never did.
func LastDelivery(ctx context.Context, db DB, name string) (time.Time, error) {
	var t *time.Time
	if err := db.QueryRow(ctx, sqlLastDelivery, name).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("read the last delivery time: %w", err)
	}
	if t == nil {
		return time.Time{}, nil
	}
	return *t, nil
}
