package sqlkit

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

var (
	sqlParkEvent     = query("park_event")
	sqlRequeueFailed = query("requeue_failed")
	sqlNotifyCurrent = query("notify_current")
	sqlFailedCount   = query("failed_count")
	sqlProgressBegin = query("progress_begin")
	sqlProgressAsync = query("progress_async")
	sqlSaveProgress  = query("save_progress")
)

// ParkedEvent is an event a handler refused permanently.
type ParkedEvent struct {
	// Row is the event as it was fetched.
	Row      Row
	Handler  string
	Error    string
	Attempts int
}

// SaveProgress records, in one transaction sent in one round trip, that the
// relay holding lease has reached cursor c, and parks the events it gave up
// on on the way. The commit does not wait for the WAL flush (see
// queries/progress_async.sql); the server ends the transaction should the
// batch stop arriving before ctx's deadline (a minute without one). When
// another relay has taken the lease, it records nothing and returns
// ErrLeaseLost.
func SaveProgress(ctx context.Context, conn *pgx.Conn, lease Lease, c Cursor, parked []ParkedEvent) error {
	pending, partial, after, straddle := c.args()
	var b pgx.Batch
	idle := time.Minute
	if d, ok := ctx.Deadline(); ok {
		idle = max(time.Until(d), time.Millisecond)
	}
	b.Queue(sqlProgressBegin)
	b.Queue(sqlProgressAsync, strconv.FormatInt(idle.Milliseconds(), 10))
	// The cursor first: it locks the row that the parked events' fence
	// checks, so that no takeover can come in between.
	var saved int64
	b.Queue(sqlSaveProgress, lease.Name, c.Mark, c.NextTxid, pending, partial, after, straddle, lease.Token).
		Exec(func(tag pgconn.CommandTag) error { saved = tag.RowsAffected(); return nil })
	for _, p := range parked {
		r := p.Row
		b.Queue(sqlParkEvent, lease.Name, r.Txid, r.ID, r.ChangedAt, r.Schema, r.Table, r.Action,
			jsonArg(r.Key), jsonArg(r.Data), jsonArg(r.Changes), p.Handler, p.Error, p.Attempts, lease.Token)
	}
	b.Queue(sqlFetchEnd)
	if err := conn.SendBatch(ctx, &b).Close(); err != nil {
		return fmt.Errorf("save progress: %w", err)
	}
	if saved == 0 {
		return fmt.Errorf("save progress: %w", ErrLeaseLost)
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

// jsonArg passes JSON text as a query argument: a string, so that it is sent
// as text and cast by the query, or nil for SQL NULL.
func jsonArg(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}
