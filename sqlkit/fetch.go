package sqlkit

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Snapshot is a PostgreSQL snapshot (pg_current_snapshot()): transactions
// below Xmin have ended, those at or above Xmax are treated as not started
// (PostgreSQL leaves running ones at or above Xmax out of Xip), and Xip
// lists the ones between that were in progress.
type Snapshot struct {
	Xmin, Xmax uint64
	Xip        []uint64
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
	// Rows are the events, in delivery order: transaction after
	// transaction, each transaction's events together and in id order.
	Rows []Row
	// Full is true when the fetch stopped at its limit, so more may be
	// waiting: fetch again at once.
	Full bool

	progress progress
}

// progress is what a fetch read, as Cursor.Advance needs it.
type progress struct {
	read      bool     // any outbox row was read
	txid      uint64   // the last transaction read
	after     int64    // the last event id of it that was read
	lastOf    int64    // that transaction's last outbox id
	lastWhole bool     // whether it was read to its end
	whole     []uint64 // the transactions read to their end
	all       bool     // every transaction the fetch took was read whole
	edge      int64    // the window's edge E, 0 when it reached the end
	early     []uint64 // the early candidates (fetch_batch.sql)
}

var (
	sqlFetchBegin    = query("fetch_begin")
	sqlFetchSnapshot = query("fetch_snapshot")
	sqlFetchBatch    = query("fetch_batch")
	sqlFetchEnd      = query("fetch_end")
)

// Fetch reads up to limit undelivered events for cursor c, together with the
// snapshot they were read under, in one round trip. rows is reused when it
// has the capacity.
func Fetch(ctx context.Context, conn *pgx.Conn, c Cursor, limit int, rows []Row) (Batch, error) {
	pending, partial, after := c.args()
	var qb pgx.Batch
	qb.Queue(sqlFetchBegin)
	qb.Queue(sqlFetchSnapshot)
	qb.Queue(sqlFetchBatch, c.Mark, c.NextTxid, pending, partial, after, limit)
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
		p          = &b.progress
		outboxRows int
		upto       int64 // events the rows read hold, by the query's count
		taken      int64 // transactions the query took, besides partial ones
		edge       *int64
	)
	for rs.Next() {
		var (
			r          Row
			events     int32
			keyColumns []string
			chunk, old []byte
			lastOf     int64
			first      struct {
				early []uint64
				edge  *int64
				taken *int64
			}
		)
		if err := rs.Scan(&r.ID, &r.Txid, &r.ChangedAt, &r.Schema, &r.Table, &r.Action, &r.Key, &r.Data, &r.Changes,
			&events, &keyColumns, &chunk, &old, &upto, &lastOf, &first.early, &first.edge, &first.taken); err != nil {
			rs.Close()
			return b, err
		}
		if outboxRows == 0 {
			p.early, edge = first.early, first.edge
			if first.taken != nil {
				taken = *first.taken
			}
		}
		outboxRows++
		if p.read && p.txid != r.Txid && p.lastWhole {
			p.whole = append(p.whole, p.txid)
		}
		p.read, p.txid, p.lastOf = true, r.Txid, lastOf
		p.after, p.lastWhole = r.ID+int64(events)-1, r.ID == lastOf
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
		if after, ok := c.partialAfter(r.Txid); ok && r.ID <= after {
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
	if len(rows) > limit {
		// The last chunk reaches past the limit; the rest of it is read
		// again by the next batch.
		rows = rows[:limit]
		p.after, p.lastWhole = rows[limit-1].ID, false
	}
	if p.read && p.lastWhole {
		p.whole = append(p.whole, p.txid)
	}
	// Every transaction taken was read whole when the whole transactions
	// number the partial ones plus the taken ones.
	p.all = !p.read || len(p.whole) == len(c.Partial)+int(taken) && p.lastWhole
	if edge != nil {
		p.edge = *edge
	}
	b.Full = !p.all || p.edge > 0 || upto >= int64(limit)
	b.Rows = rows
	return b, nil
}
