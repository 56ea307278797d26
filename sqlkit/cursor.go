package sqlkit

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// In what order the relay delivers, and how it knows what it has delivered
//
// Order. Transactions are delivered whole, one after another, each one's
// events in id order, and transactions in the order of their last outbox id
// ("last(t)"). That order follows commits wherever a consumer can tell:
//
//	If T1 committed before T2 wrote a change c, T1 is delivered before T2.
//
// Outbox ids come from a sequence (CACHE 1) when the capture trigger runs,
// which is after the statement's own writes. T2 wrote c after T1 committed,
// so c's id was taken after all of T1's: last(T1) < id(c) <= last(T2).
// PostgreSQL serialises the writers a consumer could see disagree (row locks,
// unique-index and foreign-key checks all make the later writer wait for the
// earlier one's commit, and a READ COMMITTED statement that read T1's rows
// started after T1 committed), so this is the order that matters. Txids are
// no substitute: a transaction takes its txid at its first write, which may
// be long before it waits for T1. Transactions that do not depend on each
// other may come in either order.
//
// Which transactions are still to deliver. Ids are taken before commit, so
// a transaction with a small last id may commit after one with a larger last
// id, and a transaction may still be open for a long time: neither may be
// skipped, and neither may hold back the others. The cursor says exactly
// which committed transactions may still have undelivered events:
//
//	Invariant: every event of every committed transaction t was delivered,
//	except (a) when t is partial: its events after After; (b) when t is
//	pending: possibly all of them; (c) when t has an outbox row with an id
//	above Mark, or (d) t >= NextTxid: all of them. A partial transaction's
//	ids are all at or below Mark. (e) An undelivered t of (c) with rows at
//	or below Mark too ("straddling" it) is listed in Straddle, unless (a),
//	(b) or (d) hold for it.
//
// A fetch reads under one snapshot S (fetch_batch.sql). First the rest of the
// partial transactions, in the cursor's order; then the candidates, visible
// transactions that by the invariant may be undelivered: the pending ones,
// those that started at or after NextTxid with ids at or below Mark, and
// those with a row above Mark. These it reads in order of last(t), up to a
// bound E: the rows above Mark (of transactions neither pending nor
// partial) are read in id order, a window of about a batch of events, E
// being the last of them. Every candidate t with last(t) <= E is taken,
// because any such t that is not pending either has its last row in that
// window or has no row above Mark at all; its rows are those in the window
// and, by (e), when it straddles Mark or started at or after NextTxid,
// those at or below Mark. When there is none, the one candidate with the
// smallest last(t) is taken alone. The batch is cut at its limit, maybe
// inside a transaction (the partial one, "Q"). Once it is delivered,
// Advance restores the invariant:
//
//   - NextTxid becomes S's xmax: every transaction delivered so far was
//     visible in S, so its txid is below xmax.
//   - Mark becomes the larger of Mark and last(t) of the last transaction
//     read, or E when every taken candidate was read whole. Every candidate
//     with a smaller last(t) was taken and read before it, and every event
//     delivered so far belongs to a transaction at or below the new Mark.
//   - Pending becomes S's in-progress list, plus the candidates that were
//     pending or at or below Mark and were not read whole. A transaction S
//     cannot see that commits later with an id at or below the new Mark
//     took that id before S was taken: it was in progress then, so either S
//     lists it, or its txid is at least S's xmax and (d) covers it.
//     PostgreSQL leaves running transactions at or above xmax out of the
//     in-progress list, which is why (d) is needed.
//   - Q, if the batch ended inside it, becomes partial, after its last
//     event read; its ids are at or below the new Mark since Mark >= last(Q).
//   - Straddle becomes, less what was read whole or is now pending or
//     partial, the old Straddle and the transactions with rows in the
//     window, those from NextTxid on with rows at or below Mark, and, when
//     a candidate beyond E was taken alone, those with rows between E and
//     it. A transaction straddling the new Mark has a row between the old
//     Mark and the new one, which is in one of those ranges, or straddled
//     the old Mark, or started at or after NextTxid.
//
// The order holds across fetches: when T2 is taken, any T1 that committed
// before T2's last write is visible too, and is a candidate with a smaller
// last id unless it was delivered already; a partial transaction, read first,
// was visible before every transaction that follows it. Nothing is skipped:
// the invariant names every undelivered committed transaction, and each fetch
// takes at least the first candidate. Nothing is repeated either: a
// transaction leaves the candidates once it is read whole, since Mark and
// NextTxid then cover it and it is dropped from Pending. After a crash the
// relay starts from its saved cursor, so it repeats at most the batch that
// was being delivered when the cursor was last saved.
//
// Pending holds only transactions open at the last fetch and at most a few
// candidates, so a long-running transaction costs one entry and holds back
// nothing but its own events; Straddle, the few transactions that a batch's
// end cut across. Txids are xid8, 64-bit and never wrapping.
//
// The window's size is free as far as correctness goes: a smaller one only
// makes a smaller batch. It is sized by the previous window (Cursor.scan),
// so that it reads about as many rows as the batch needs.
//
// "Rows" above are outbox rows and "events" their events: an outbox row
// holding a chunk (chunk.go) with id c holds the events c .. c+n-1 of one
// transaction, n <= 1024, and the next outbox row of that transaction has an
// id of at least c+1024, since ids step by 1024. Mark and last(t) are outbox
// row ids; a partial transaction's After is an event id, so a fetch can
// resume inside a chunk by reading it again and dropping the events up to
// After.

// PendingTx is a transaction whose events after id After are undelivered.
type PendingTx struct {
	Txid  uint64
	After int64
}

// Cursor is a relay's delivery position in the outbox; see the comment above
// for its meaning. The zero Cursor means "nothing delivered yet".
type Cursor struct {
	// Mark: every committed transaction with an outbox row above Mark is
	// wholly undelivered (but for the partial ones).
	Mark int64
	// NextTxid: every committed transaction with a txid at or above it is
	// wholly undelivered.
	NextTxid uint64
	// Pending lists transactions that may commit, or have committed,
	// without being covered by Mark or NextTxid: wholly undelivered.
	Pending []uint64
	// Partial lists the transactions delivered up to an event id; they
	// are delivered first, in this order.
	Partial []PendingTx
	// Straddle lists, among others, every undelivered transaction with
	// rows both at or below Mark and above it that is neither pending nor
	// partial and below NextTxid: the only ones whose rows at or below
	// Mark a fetch must look for.
	Straddle []uint64

	// scan is how many outbox rows the last fetch's window needed for its
	// events, 0 when unknown. A row holds one event or many, so a window of
	// "limit" rows, enough whatever they hold, mostly reads rows that the
	// batch then leaves for the next one; sizing the window by the last
	// one reads about what is needed. It is a hint, not saved: any window
	// size is correct (cursor's argument), a small one only makes smaller
	// batches.
	scan int
	// busy: the last fetch stopped at its limit, so the next one finds
	// more than the live fetch (fetch_live.sql) can answer. A hint, not
	// saved, like scan.
	busy bool
}

// live tells whether fetch_live.sql may answer the next fetch: only
// without partial and straddling transactions, and not while the relay
// works through a backlog, where it would only say no.
func (c Cursor) live() bool {
	return len(c.Partial) == 0 && len(c.Straddle) == 0 && !c.busy
}

// windowRows is how many rows the next fetch's window may read.
func (c Cursor) windowRows(limit int) int {
	if c.scan <= 0 {
		return limit
	}
	return min(limit, c.scan+c.scan/8+2)
}

// Advance returns the cursor that holds once every event of b has been
// delivered. c must be the cursor b was fetched with.
func (c Cursor) Advance(b Batch) Cursor {
	s := b.Snapshot
	n := Cursor{Mark: c.Mark, NextTxid: max(c.NextTxid, s.Xmax), busy: b.Full}
	p := b.progress
	// Sorted once: it is looked up for every partial, pending and
	// straddling transaction, and holds every transaction of the batch.
	whole := slices.Clone(p.whole)
	slices.Sort(whole)
	isWhole := func(t uint64) bool { _, ok := slices.BinarySearch(whole, t); return ok }
	switch rows, events := p.window[0], p.window[1]; {
	case events >= int64(p.limit):
		// Enough rows for the events: this share of them will do.
		n.scan = int((rows*int64(p.limit) + events - 1) / events)
	case p.edge == 0:
		n.scan = c.scan // the window reached the end of the outbox
	default:
		n.scan = 2 * p.scanned // too few: read more next time
	}
	if p.read {
		n.Mark = max(n.Mark, p.lastOf)
		if p.all && p.edge > 0 {
			n.Mark = max(n.Mark, p.edge)
		}
	}
	// Partial transactions not read whole stay partial, in their order;
	// the one the batch ended inside moves on to its last event read. A
	// candidate the batch ended inside follows every partial one, which
	// were all read whole before it.
	for _, q := range c.Partial {
		switch {
		case p.passed || isWhole(q.Txid):
			// Read whole; or, once the batch got past the partial
			// ones, with nothing left (its rows were deleted).
		case p.read && !p.lastWhole && q.Txid == p.txid:
			n.Partial = append(n.Partial, PendingTx{Txid: q.Txid, After: p.after})
		default:
			n.Partial = append(n.Partial, q)
		}
	}
	if p.read && !p.lastWhole {
		if _, ok := c.partialAfter(p.txid); !ok {
			n.Partial = append(n.Partial, PendingTx{Txid: p.txid, After: p.after})
		}
	}
	isPartial := func(t uint64) bool {
		return slices.ContainsFunc(n.Partial, func(q PendingTx) bool { return q.Txid == t })
	}
	pending := slices.Clone(s.Xip)
	for _, t := range p.early {
		if !isWhole(t) {
			pending = append(pending, t)
		}
	}
	slices.Sort(pending)
	pending = slices.Compact(pending)
	n.Pending = slices.DeleteFunc(pending, isPartial)
	// Straddle, as fetch_batch.sql gathered it, less what is now known
	// to be delivered, pending or partial. Of the window's transactions,
	// only those with a row at or below the new Mark can straddle it.
	straddle := slices.Clone(p.straddle)
	for i, t := range p.windowTxids {
		if p.windowFirst[i] <= n.Mark {
			straddle = append(straddle, t)
		}
	}
	slices.Sort(straddle)
	n.Straddle = slices.DeleteFunc(slices.Compact(straddle), func(t uint64) bool {
		_, pend := slices.BinarySearch(n.Pending, t)
		return pend || isPartial(t) || isWhole(t)
	})
	if len(n.Straddle) == 0 {
		n.Straddle = nil
	}
	return n
}

// args returns the cursor's lists as query arguments.
func (c Cursor) args() (pending, partial []uint64, after []int64, straddle []uint64) {
	pending, straddle = c.Pending, c.Straddle
	if pending == nil {
		pending = []uint64{}
	}
	if straddle == nil {
		straddle = []uint64{}
	}
	partial = make([]uint64, len(c.Partial))
	after = make([]int64, len(c.Partial))
	for i, p := range c.Partial {
		partial[i], after[i] = p.Txid, p.After
	}
	return pending, partial, after, straddle
}

// partialAfter returns the id after which the events of partial transaction
// txid are undelivered, and whether txid is partial.
func (c Cursor) partialAfter(txid uint64) (int64, bool) {
	for _, p := range c.Partial {
		if p.Txid == txid {
			return p.After, true
		}
	}
	return 0, false
}

var (
	sqlLoadCursor = query("load_cursor")
	sqlSaveCursor = query("save_cursor")
)

// LoadCursor returns the saved cursor of the relay called name, or the zero
// Cursor (deliver everything) when it has none.
func LoadCursor(ctx context.Context, db DB, name string) (Cursor, error) {
	var (
		c       Cursor
		partial []uint64
		after   []int64
	)
	err := db.QueryRow(ctx, sqlLoadCursor, name).Scan(&c.Mark, &c.NextTxid, &c.Pending, &partial, &after, &c.Straddle)
	if errors.Is(err, pgx.ErrNoRows) {
		return Cursor{}, nil
	}
	if err != nil {
		return Cursor{}, fmt.Errorf("load cursor %q: %w", name, err)
	}
	if len(partial) != len(after) {
		return Cursor{}, fmt.Errorf("load cursor %q: corrupt partial lists", name)
	}
	if len(c.Pending) == 0 {
		c.Pending = nil
	}
	if len(c.Straddle) == 0 {
		c.Straddle = nil
	}
	for i := range partial {
		c.Partial = append(c.Partial, PendingTx{Txid: partial[i], After: after[i]})
	}
	return c, nil
}

// SaveCursor stores the cursor of the relay called name.
func SaveCursor(ctx context.Context, db DB, name string, c Cursor) error {
	pending, partial, after, straddle := c.args()
	if _, err := db.Exec(ctx, sqlSaveCursor, name, c.Mark, c.NextTxid, pending, partial, after, straddle); err != nil {
		return fmt.Errorf("save cursor %q: %w", name, err)
	}
	return nil
}
