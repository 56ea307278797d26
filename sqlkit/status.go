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
	return backlogByTable(ctx, db, c, nil)
}

// backlogByTable counts, with snapshot (text of a pg_snapshot), only the
// events of transactions committed in it.
func backlogByTable(ctx context.Context, db DB, c Cursor, snapshot *string) ([]TableCount, error) {
	pending, partial, after, _ := c.args()
	rows, err := db.Query(ctx, sqlBacklogTables, c.Mark, c.NextTxid, pending, partial, after, snapshot)
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

var sqlSnapshotNow = query("snapshot_now")

// SnapshotNow returns the database's current snapshot, as text: what has
// committed by now, for BacklogBefore.
func SnapshotNow(ctx context.Context, db DB) (string, error) {
	var snap string
	if err := db.QueryRow(ctx, sqlSnapshotNow).Scan(&snap); err != nil {
		return "", fmt.Errorf("read the current snapshot: %w", err)
	}
	return snap, nil
}

// BacklogBefore counts the events undelivered for relay name among those
// committed in snapshot (from SnapshotNow): zero once everything committed
// by then is delivered, whatever was committed since.
func BacklogBefore(ctx context.Context, db DB, name, snapshot string) (int64, error) {
	// By index, as relay.ReadStatusWith reads the backlog: relay run
	// --drain asks after every batch.
	tx, err := db.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("count the backlog before a snapshot: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := AvoidSequentialScans(ctx, tx); err != nil {
		return 0, err
	}
	c, err := LoadCursor(ctx, tx, name)
	if err != nil {
		return 0, err
	}
	tables, err := backlogByTable(ctx, tx, c, &snapshot)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, t := range tables {
		n += t.Count
	}
	return n, nil
}
