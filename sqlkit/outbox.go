package sqlkit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// How the relay knows what it has delivered
//
// Outbox ids come from a sequence and are handed out before commit, so
// transactions commit in a different order than their ids: a cursor
// "id > last delivered id" skips the rows of a transaction that took its ids
// early and committed late. A bare transaction-id watermark (deliver only
// below pg_snapshot_xmin) is correct but stalls every event behind the oldest
// open transaction, for as long as that transaction stays open.
//
// The cursor below works per transaction instead, using the fact that all the
// rows of one transaction become visible at the same instant: when it
// commits. It states exactly which transactions may still have undelivered
// rows:
//
//	Invariant: every row of every committed transaction t has been delivered,
//	except all rows of t when t >= Next, and the rows with id > After of t
//	when (t, After) is in Pending. Every pending txid is below Next.
//
// A fetch reads, under one snapshot S, the candidate rows (txid >= Next, or a
// pending txid with id > After) that S can see, in (txid, id) order, at most
// a batch of them. Once those rows are delivered, Advance moves the cursor so
// that the invariant holds again:
//
//   - A transaction that S can see has all its candidate rows in the batch,
//     unless the batch was cut short at row (tk, idk); then exactly the
//     transactions sorting before tk are complete and tk itself is complete
//     up to idk.
//   - A transaction below S's xmax that S cannot see and that will commit was
//     in progress when S was taken, so it is in S's xip list: it becomes
//     pending with After 0 (rows of an aborted transaction are never seen,
//     and an aborted transaction is dropped once a snapshot no longer lists
//     it as in progress).
//   - Transactions at or above S's xmax had not started: Next moves to xmax,
//     or to tk+1 when the batch was cut short.
//
// Pending therefore holds only transactions that were open at the last fetch
// (plus at most one partly read), so a long-running transaction costs one
// entry and holds back nothing but its own rows. Txids are xid8, 64-bit and
// never wrapping.
//
// "Rows" above are events. An outbox row holding a chunk (chunk.go) with id
// c holds the events c .. c+n-1 of one transaction, n <= 1024, and the next
// outbox row of that transaction has an id of at least c+1024, since ids
// step by 1024. So event ids order a transaction's events as the outbox rows
// do, a batch cut short inside a chunk is described by the last event's id
// like any other, and a fetch resumes inside that chunk by reading it again
// and dropping the events up to After.

// PendingTx is a transaction whose rows after id After are undelivered.
type PendingTx struct {
	Txid  uint64
	After int64
}

// Cursor is a relay's delivery position in the outbox; see the comment above
// for its meaning. The zero Cursor means "nothing delivered yet".
type Cursor struct {
	// Next: every transaction with an id at or above Next is wholly
	// undelivered.
	Next uint64
	// Pending lists transactions below Next that may still have
	// undelivered rows.
	Pending []PendingTx
}

// Snapshot is a PostgreSQL snapshot (pg_current_snapshot()): transactions
// below Xmin have ended, those at or above Xmax had not started, and Xip lists
// the ones between that were in progress.
type Snapshot struct {
	Xmin, Xmax uint64
	Xip        []uint64
}

// Finished reports whether transaction txid had ended (committed or aborted)
// when the snapshot was taken, which is when its rows, if it committed, are
// visible in the snapshot.
func (s Snapshot) Finished(txid uint64) bool {
	if txid < s.Xmin {
		return true
	}
	if txid >= s.Xmax {
		return false
	}
	return !slices.Contains(s.Xip, txid)
}

// Row is one event of the outbox: an outbox row, or one of the events of a
// chunk (see chunk.go).
type Row struct {
	ID        int64
	Txid      uint64
	ChangedAt time.Time
	Schema    string
	Table     string
	Action    string
	// Key, Data and Changes are JSON, nil when SQL NULL.
	Key, Data, Changes []byte
}

// Batch is the result of one fetch.
type Batch struct {
	Snapshot Snapshot
	Rows     []Row
	// Full is true when the fetch stopped at its limit, so more may be
	// waiting; End is then where it stopped: every event of transaction
	// End.Txid up to id End.After, and of the transactions sorting before
	// it, was read. End can lie past the last of Rows, when the last outbox
	// rows read held no event (updates that changed nothing).
	Full bool
	End  PendingTx
}

// Advance returns the cursor that holds once every row of b has been
// delivered. c must be the cursor b was fetched with.
func (c Cursor) Advance(b Batch) Cursor {
	s := b.Snapshot
	if !b.Full {
		next := max(c.Next, s.Xmax)
		pending := make([]PendingTx, 0, len(c.Pending)+len(s.Xip))
		for _, p := range c.Pending {
			if !s.Finished(p.Txid) {
				pending = append(pending, p)
			}
		}
		for _, x := range s.Xip {
			if x >= c.Next {
				pending = append(pending, PendingTx{Txid: x})
			}
		}
		return Cursor{Next: next, Pending: sortPending(pending)}
	}

	tk, idk := b.End.Txid, b.End.After
	pending := make([]PendingTx, 0, len(c.Pending)+len(s.Xip)+1)
	for _, p := range c.Pending {
		switch {
		case p.Txid < tk:
			if !s.Finished(p.Txid) {
				pending = append(pending, p)
			}
		case p.Txid == tk:
			pending = append(pending, PendingTx{Txid: tk, After: idk})
		default:
			pending = append(pending, p)
		}
	}
	for _, x := range s.Xip {
		if x >= c.Next && x < tk {
			pending = append(pending, PendingTx{Txid: x})
		}
	}
	if tk >= c.Next {
		pending = append(pending, PendingTx{Txid: tk, After: idk})
	}
	return Cursor{Next: max(c.Next, tk+1), Pending: sortPending(pending)}
}

func sortPending(p []PendingTx) []PendingTx {
	slices.SortFunc(p, func(a, b PendingTx) int {
		switch {
		case a.Txid < b.Txid:
			return -1
		case a.Txid > b.Txid:
			return 1
		}
		return 0
	})
	return p
}

func (c Cursor) args() (txids []uint64, after []int64) {
	txids = make([]uint64, len(c.Pending))
	after = make([]int64, len(c.Pending))
	for i, p := range c.Pending {
		txids[i], after[i] = p.Txid, p.After
	}
	return txids, after
}

var (
	sqlFetchBegin    = query("fetch_begin")
	sqlFetchSnapshot = query("fetch_snapshot")
	sqlFetchBatch    = query("fetch_batch")
	sqlFetchEnd      = query("fetch_end")
	sqlLoadCursor    = query("load_cursor")
	sqlSaveCursor    = query("save_cursor")
	sqlBacklog       = query("backlog")
)

// Fetch reads up to limit undelivered events for cursor c, together with the
// snapshot they were read under, in one round trip. rows is reused when it
// has the capacity.
func Fetch(ctx context.Context, conn *pgx.Conn, c Cursor, limit int, rows []Row) (Batch, error) {
	txids, after := c.args()
	var qb pgx.Batch
	qb.Queue(sqlFetchBegin)
	qb.Queue(sqlFetchSnapshot)
	qb.Queue(sqlFetchBatch, c.Next, txids, after, limit)
	qb.Queue(sqlFetchEnd)
	br := conn.SendBatch(ctx, &qb)
	b, err := readFetch(br, rows[:0], c, limit)
	if closeErr := br.Close(); err == nil && closeErr != nil {
		err = closeErr
	}
	if err != nil {
		return Batch{}, fmt.Errorf("fetch outbox batch: %w", err)
	}
	return b, nil
}

// readFetch reads the results of Fetch into rows: the events after cursor c,
// at most limit of them.
func readFetch(br pgx.BatchResults, rows []Row, c Cursor, limit int) (Batch, error) {
	var b Batch
	if _, err := br.Exec(); err != nil {
		return b, err
	}
	if err := br.QueryRow().Scan(&b.Snapshot.Xmin, &b.Snapshot.Xmax, &b.Snapshot.Xip); err != nil {
		return b, err
	}
	rs, err := br.Query()
	if err != nil {
		return b, err
	}
	var (
		outboxRows int
		upto       int64     // events the rows read hold, by the query's count
		end        PendingTx // the last event id the rows read span
	)
	for rs.Next() {
		var (
			r          Row
			events     int32
			keyColumns []string
			chunk, old []byte
		)
		if err := rs.Scan(&r.ID, &r.Txid, &r.ChangedAt, &r.Schema, &r.Table, &r.Action, &r.Key, &r.Data, &r.Changes,
			&events, &keyColumns, &chunk, &old, &upto); err != nil {
			rs.Close()
			return b, err
		}
		outboxRows++
		end = PendingTx{Txid: r.Txid, After: r.ID + int64(events) - 1}
		if chunk == nil {
			rows = append(rows, r)
			continue
		}
		n := len(rows)
		if rows, err = appendChunk(rows, r, chunk, old, keyColumns); err != nil {
			rs.Close()
			return b, err
		}
		// A chunk that a previous batch delivered in part: drop that part.
		if after, ok := c.after(r.Txid); ok && r.ID <= after {
			delivered := 0
			for delivered < len(rows)-n && rows[n+delivered].ID <= after {
				delivered++
			}
			rows = append(rows[:n], rows[n+delivered:]...)
		}
	}
	if err := rs.Err(); err != nil {
		return b, err
	}
	if _, err := br.Exec(); err != nil {
		return b, err
	}
	switch {
	case len(rows) > limit:
		// The last chunk reaches past the limit; the rest of it is read
		// again by the next batch.
		rows = rows[:limit]
		last := rows[limit-1]
		b.Full, b.End = true, PendingTx{Txid: last.Txid, After: last.ID}
	case outboxRows >= limit || upto >= int64(limit):
		// The query stopped at its limit. It counts event ids, which
		// overstates updates, so there may be fewer events than limit.
		b.Full, b.End = true, end
	}
	b.Rows = rows
	return b, nil
}

// after returns the id after which the events of pending transaction txid
// are undelivered, and whether txid is pending.
func (c Cursor) after(txid uint64) (int64, bool) {
	for _, p := range c.Pending {
		if p.Txid == txid {
			return p.After, true
		}
	}
	return 0, false
}

// LoadCursor returns the saved cursor of the relay called name, or the zero
// Cursor (deliver everything) when it has none.
func LoadCursor(ctx context.Context, db DB, name string) (Cursor, error) {
	var (
		c     Cursor
		txids []uint64
		after []int64
	)
	err := db.QueryRow(ctx, sqlLoadCursor, name).Scan(&c.Next, &txids, &after)
	if errors.Is(err, pgx.ErrNoRows) {
		return Cursor{}, nil
	}
	if err != nil {
		return Cursor{}, fmt.Errorf("load cursor %q: %w", name, err)
	}
	if len(txids) != len(after) {
		return Cursor{}, fmt.Errorf("load cursor %q: corrupt pending lists", name)
	}
	for i := range txids {
		c.Pending = append(c.Pending, PendingTx{Txid: txids[i], After: after[i]})
	}
	return c, nil
}

// SaveCursor stores the cursor of the relay called name.
func SaveCursor(ctx context.Context, db DB, name string, c Cursor) error {
	txids, after := c.args()
	if _, err := db.Exec(ctx, sqlSaveCursor, name, c.Next, txids, after); err != nil {
		return fmt.Errorf("save cursor %q: %w", name, err)
	}
	return nil
}

// Backlog returns how many events are undelivered for cursor c and the change
// time of the oldest (zero when there are none).
func Backlog(ctx context.Context, db DB, c Cursor) (count int64, oldest time.Time, err error) {
	txids, after := c.args()
	var ts *time.Time
	if err := db.QueryRow(ctx, sqlBacklog, c.Next, txids, after).Scan(&count, &ts); err != nil {
		return 0, time.Time{}, fmt.Errorf("count undelivered events: %w", err)
	}
	if ts != nil {
		oldest = *ts
	}
	return count, oldest, nil
}

var (
	sqlListen        = query("listen")
	sqlNotify        = query("notify")
	sqlTryLockCursor = query("try_lock_cursor")
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

// TryLockCursor tries to become the only relay delivering for cursor name,
// for as long as conn stays open. It reports whether it succeeded.
func TryLockCursor(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
	var ok bool
	if err := conn.QueryRow(ctx, sqlTryLockCursor, name).Scan(&ok); err != nil {
		return false, fmt.Errorf("lock cursor %q: %w", name, err)
	}
	return ok, nil
}

var (
	sqlPrune       = query("prune")
	sqlOutboxCount = query("outbox_count")
)

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
	tag, err := db.Exec(ctx, sqlPrune, retention, limit)
	if err != nil {
		return 0, fmt.Errorf("prune delivered events: %w", err)
	}
	return tag.RowsAffected(), nil
}
