package sqlkit

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

var (
	sqlParkEvent     = query("park_event")
	sqlRequeueFailed = query("requeue_failed")
	sqlNotifyCurrent = query("notify_current")
	sqlFailedCount   = query("failed_count")
)

// ParkedEvent is an outbox row a handler refused permanently.
type ParkedEvent struct {
	Txid     uint64
	ID       int64
	Handler  string
	Error    string
	Attempts int
}

// SaveProgress records, in one transaction, that the relay called name has
// reached cursor c, and parks the events it gave up on on the way.
func SaveProgress(ctx context.Context, db DB, name string, c Cursor, parked []ParkedEvent) error {
	if len(parked) == 0 {
		return SaveCursor(ctx, db, name, c)
	}
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		for _, p := range parked {
			if _, err := tx.Exec(ctx, sqlParkEvent, name, p.Txid, p.ID, p.Handler, p.Error, p.Attempts); err != nil {
				return fmt.Errorf("park event %d: %w", p.ID, err)
			}
		}
		return SaveCursor(ctx, tx, name, c)
	})
	if err != nil {
		return fmt.Errorf("save progress: %w", err)
	}
	return nil
}

// RequeueFailed moves the parked events of the relay called name back into
// the outbox, where every relay delivers them again as new events, and
// returns how many there were.
func RequeueFailed(ctx context.Context, db DB, name string) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, sqlRequeueFailed, name)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		if n > 0 {
			_, err = tx.Exec(ctx, sqlNotifyCurrent)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("re-queue failed events: %w", err)
	}
	return n, nil
}

// FailedCount returns how many events are parked for the relay called name.
func FailedCount(ctx context.Context, db DB, name string) (int64, error) {
	var n int64
	if err := db.QueryRow(ctx, sqlFailedCount, name).Scan(&n); err != nil {
		return 0, fmt.Errorf("count failed events: %w", err)
	}
	return n, nil
}
