package sqlkit

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Backlog returns how many events are undelivered for cursor c and the change
// time of the oldest (zero when there are none).
func Backlog(ctx context.Context, db DB, c Cursor) (count int64, oldest time.Time, err error) {
	tables, err := BacklogByTable(ctx, db, c)
	if err != nil {
		return 0, time.Time{}, err
	}
	for _, t := range tables {
		count += t.Count
		if oldest.IsZero() || t.Oldest.Before(oldest) {
			oldest = t.Oldest
		}
	}
	return count, oldest, nil
}

var (
	sqlListen = query("listen")
	sqlNotify = query("notify")
)

// Listen makes conn LISTEN on NotifyChannel.
func Listen(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, sqlListen); err != nil {
		return fmt.Errorf("listen %s: %w", NotifyChannel, err)
	}
	return nil
}

// Notify sends payload on NotifyChannel.
func Notify(ctx context.Context, db DB, payload string) error {
	if _, err := db.Exec(ctx, sqlNotify, payload); err != nil {
		return fmt.Errorf("notify %s: %w", NotifyChannel, err)
	}
	return nil
}

var (
	sqlPrune         = query("prune")
	sqlOutboxCount   = query("outbox_count")
	sqlAvoidSeqScans = query("avoid_seqscans")
)

// AvoidSequentialScans makes PostgreSQL read the outbox by its indexes for
// the rest of tx, a transaction: reads of the backlog then cost what the
// backlog holds, whatever the table's statistics say. Not for OutboxSize,
// which reads every row.
func AvoidSequentialScans(ctx context.Context, tx DB) error {
	if _, err := tx.Exec(ctx, sqlAvoidSeqScans); err != nil {
		return fmt.Errorf("set enable_seqscan: %w", err)
	}
	return nil
}

// OutboxSize returns how many events the outbox holds, delivered or not.
func OutboxSize(ctx context.Context, db DB) (int64, error) {
	var n int64
	if err := db.QueryRow(ctx, sqlOutboxCount).Scan(&n); err != nil {
		return 0, fmt.Errorf("count outbox rows: %w", err)
	}
	return n, nil
}

// Prune looks at the limit oldest outbox rows (an event, or a chunk of up to
// 1,000) that every relay has delivered, deletes those older than retention,
// and returns how many it deleted. Call it again while it returns limit;
// small batches keep each transaction and its locks short, and each call's
// cost independent of the outbox's size.
func Prune(ctx context.Context, db DB, retention time.Duration, limit int) (int64, error) {
	return prune(ctx, db, retention, limit, nil, nil)
}

// PruneAs is Prune for the relay holding lease: it deletes nothing once
// another relay has taken the lease.
func PruneAs(ctx context.Context, db DB, lease Lease, retention time.Duration, limit int) (int64, error) {
	return prune(ctx, db, retention, limit, &lease.Name, &lease.Token)
}

func prune(ctx context.Context, db DB, retention time.Duration, limit int, name *string, token *int64) (int64, error) {
	tag, err := db.Exec(ctx, sqlPrune, retention, limit, name, token)
	if err != nil {
		return 0, fmt.Errorf("prune delivered events: %w", err)
	}
	return tag.RowsAffected(), nil
}
