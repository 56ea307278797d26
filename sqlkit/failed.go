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

// ParkEvent records outbox row (txid, id) as failed for the relay called
// name: handler refused it with errText after attempts tries.
func ParkEvent(ctx context.Context, db DB, name string, txid uint64, id int64, handler, errText string, attempts int) error {
	if _, err := db.Exec(ctx, sqlParkEvent, name, txid, id, handler, errText, attempts); err != nil {
		return fmt.Errorf("park event %d: %w", id, err)
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
