package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// Commit order. A transaction takes its txid at its first write (or at
// pg_current_xact_id()), so a transaction T2 can hold a smaller txid than T1
// and still commit after it, for example because it waited on T1's row
// lock. The tests below build such inversions on purpose, each step on its
// own connection so that the interleaving is exact, and require what a
// consumer applying events in arrival order needs: when T1 committed before
// T2 wrote a change, all of T1's events arrive before that change of T2; and
// a transaction's events arrive together, in the order they were written.
// So when T1 committed before T2's last write, T1 comes wholly before T2.
//
// Each scenario runs in three modes: "backlog" (no relay runs while the
// transactions run; it starts afterwards and reads them all at once),
// "live" (the relay runs during the scenario) and "stalled" (the relay runs,
// but a handler holds on to an event written just before the scenario until
// the scenario is over: the running relay, its cursor in memory, then finds
// all of it committed at once).

// orderMode is how a scenario's events are delivered.
type orderMode int

const (
	orderBacklog orderMode = iota
	orderLive
	orderStalled
)

var orderModes = []orderMode{orderBacklog, orderLive, orderStalled}

func (m orderMode) String() string { return [...]string{"backlog", "live", "stalled"}[m] }

// stallHandler holds on to the first event it is given until released.
type stallHandler struct {
	relay.BaseHandler
	held, release   chan struct{}
	hold, unblocked sync.Once
}

func newStallHandler() *stallHandler {
	return &stallHandler{held: make(chan struct{}), release: make(chan struct{})}
}

func (h *stallHandler) OnEvent(ctx context.Context, _ relay.Event) (err error) {
	h.hold.Do(func() {
		close(h.held)
		select {
		case <-h.release:
		case <-ctx.Done():
			err = ctx.Err()
		}
	})
	return err
}

func (h *stallHandler) unblock() { h.unblocked.Do(func() { close(h.release) }) }

// orderScript drives transactions, each on its own connection, one step at
// a time, and records in which step each wrote its last change and
// committed. The steps are taken one after the other by the test goroutine,
// so "committed in an earlier step than another's write" means the commit
// had returned before that write took effect.
type orderScript struct {
	t    *testing.T
	ctx  context.Context
	f    fixture
	step int
	txs  []*orderTx
}

// orderTx is one transaction of an orderScript.
type orderTx struct {
	s      *orderScript
	name   string
	conn   *pgx.Conn
	tx     pgx.Tx
	txid   uint64
	events int // how many events its writes capture
	// lastWrite and commit are the steps of its last write and of its
	// commit; 0 until then.
	lastWrite, commit int
}

func newOrderScript(t *testing.T, ctx context.Context, f fixture) *orderScript {
	return &orderScript{t: t, ctx: ctx, f: f}
}

func (s *orderScript) next() int {
	s.step++
	return s.step
}

// begin opens a connection and begins a transaction on it, named name in
// failure messages.
func (s *orderScript) begin(name string) *orderTx {
	s.t.Helper()
	conn, err := pgx.Connect(s.ctx, s.f.url)
	require.NoError(s.t, err)
	s.t.Cleanup(func() { _ = conn.Close(context.Background()) })
	tx, err := conn.Begin(s.ctx)
	require.NoError(s.t, err)
	x := &orderTx{s: s, name: name, conn: conn, tx: tx}
	s.txs = append(s.txs, x)
	return x
}

// autocommit runs sql, which captures events events, in a transaction of
// its own.
func (s *orderScript) autocommit(name, sql string, events int, args ...any) *orderTx {
	s.t.Helper()
	x := s.begin(name)
	x.exec(sql, events, args...)
	x.commitTx()
	return x
}

// takeTxid makes x take its txid now, before writing anything.
func (x *orderTx) takeTxid() {
	x.s.t.Helper()
	require.NoError(x.s.t, x.tx.QueryRow(x.s.ctx, `SELECT pg_current_xact_id()`).Scan(&x.txid))
	x.s.next()
}

// exec runs a write that captures events events.
func (x *orderTx) exec(sql string, events int, args ...any) {
	x.s.t.Helper()
	_, err := x.tx.Exec(x.s.ctx, sql, args...)
	require.NoError(x.s.t, err, "%s: %s", x.name, sql)
	x.events += events
	x.lastWrite = x.s.next()
}

// execBlocked starts a write that must block on a lock, and returns once
// PostgreSQL reports x's backend as waiting for a lock. The returned
// function waits for the write to complete and records it as a step.
func (x *orderTx) execBlocked(sql string, events int, args ...any) (finish func()) {
	s := x.s
	s.t.Helper()
	pid := x.conn.PgConn().PID()
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan error, 1)
	ended := make(chan struct{})
	go func() {
		_, err := x.tx.Exec(ctx, sql, args...)
		done <- err
		close(ended)
	}()
	finished := false
	// Should the test fail while the write is blocked: cancel it, and wait
	// until the goroutine is done with the connection before it is closed.
	s.t.Cleanup(func() {
		cancel()
		if !finished {
			<-done
		}
	})

	testenv.WaitForLockWait(s.t, s.ctx, s.f.pool, pid, ended)
	return func() {
		s.t.Helper()
		var err error
		select {
		case err = <-done:
			finished = true
		case <-s.ctx.Done():
			s.t.Fatalf("%s: %s is still blocked", x.name, sql)
		}
		require.NoError(s.t, err, "%s: %s", x.name, sql)
		x.events += events
		x.lastWrite = s.next()
	}
}

// commitTx records x's txid and commits it.
func (x *orderTx) commitTx() {
	x.s.t.Helper()
	require.NoError(x.s.t, x.tx.QueryRow(x.s.ctx, `SELECT pg_current_xact_id()`).Scan(&x.txid))
	require.NoError(x.s.t, x.tx.Commit(x.s.ctx))
	x.commit = x.s.next()
}

// total is how many events the committed transactions captured.
func (s *orderScript) total() int {
	n := 0
	for _, x := range s.txs {
		if x.commit > 0 {
			n += x.events
		}
	}
	return n
}

// requireCommitOrder checks the delivered events against what the script
// did: every committed transaction's events exactly once, whole (contiguous,
// in id order), and each transaction after every transaction that had
// committed before its last write.
func (s *orderScript) requireCommitOrder(t *testing.T, events []relay.Event) {
	t.Helper()
	byTxid := map[uint64]*orderTx{}
	for _, x := range s.txs {
		if x.commit > 0 {
			byTxid[x.txid] = x
		}
	}
	requireNoDuplicates(t, events)
	count := map[uint64]int{}
	for _, e := range events {
		require.Contains(t, byTxid, e.Txid, "event %d of a transaction the scenario did not commit", e.ID)
		count[e.Txid]++
	}
	for _, x := range byTxid {
		require.Equal(t, x.events, count[x.txid], "events of %s (txid %d)", x.name, x.txid)
	}
	requireWholeTransactions(t, events)
	first, last := map[uint64]int{}, map[uint64]int{}
	for i, e := range events {
		if _, ok := first[e.Txid]; !ok {
			first[e.Txid] = i
		}
		last[e.Txid] = i
	}
	var wrong []string
	for _, b := range s.txs {
		for _, a := range s.txs {
			if a.commit == 0 || b.commit == 0 || a.events == 0 || b.events == 0 || a.commit >= b.lastWrite {
				continue
			}
			if last[a.txid] > first[b.txid] {
				wrong = append(wrong, fmt.Sprintf("%s (txid %d) delivered before %s (txid %d), which committed before %s's last write",
					b.name, b.txid, a.name, a.txid, b.name))
			}
		}
	}
	if n := len(wrong); n > 0 {
		more := ""
		if n > 8 {
			more = fmt.Sprintf("\n  … and %d more", n-8)
			wrong = wrong[:8]
		}
		t.Fatalf("%d commit-order violations:\n  %s%s\ndelivered: %s", n, strings.Join(wrong, "\n  "), more, s.describe(events))
	}
}

// describe lists the delivered transactions by name, in delivery order.
func (s *orderScript) describe(events []relay.Event) string {
	names := map[uint64]string{}
	for _, x := range s.txs {
		names[x.txid] = x.name
	}
	var b strings.Builder
	for i, e := range events {
		if i > 0 && events[i-1].Txid == e.Txid {
			continue
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s[txid %d]", names[e.Txid], e.Txid)
	}
	return b.String()
}

// requireWholeTransactions asserts that each transaction's events are
// delivered together (no other transaction's events between them) and in
// the order they were written (increasing ids).
func requireWholeTransactions(t *testing.T, events []relay.Event) {
	t.Helper()
	ended := map[uint64]int{} // txid: position after its last event, once another transaction's came
	for i, e := range events {
		if i > 0 && events[i-1].Txid == e.Txid {
			require.Greater(t, e.ID, events[i-1].ID,
				"transaction %d: event %d delivered after event %d, not in the order written", e.Txid, e.ID, events[i-1].ID)
			continue
		}
		if i > 0 {
			ended[events[i-1].Txid] = i
		}
		if at, ok := ended[e.Txid]; ok {
			t.Fatalf("transaction %d is not delivered together: its event %d (position %d) comes after other transactions' events (from position %d)",
				e.Txid, e.ID, i, at)
		}
	}
}

// requireDeliveredBefore asserts that every event of transaction a is
// delivered before any event of transaction b, and that both were
// delivered.
func requireDeliveredBefore(t *testing.T, events []relay.Event, a, b uint64, msgAndArgs ...any) {
	t.Helper()
	lastA, firstB := -1, -1
	for i, e := range events {
		switch e.Txid {
		case a:
			lastA = i
		case b:
			if firstB < 0 {
				firstB = i
			}
		}
	}
	require.GreaterOrEqual(t, lastA, 0, "no event of transaction %d delivered", a)
	require.GreaterOrEqual(t, firstB, 0, "no event of transaction %d delivered", b)
	if lastA > firstB {
		require.Fail(t, fmt.Sprintf("transaction %d's event %d (position %d) is delivered after transaction %d's event %d (position %d)",
			a, events[lastA].ID, lastA, b, events[firstB].ID, firstB), msgAndArgs...)
	}
}

// newOrderFixture is a fixture with the scenarios' tables, all with CDC:
// acct with row 1 (written before CDC, so it gives no event), and parent
// and child with a foreign key.
func newOrderFixture(t *testing.T, ctx context.Context) fixture {
	t.Helper()
	f := newFixture(t)
	f.exec(t, `CREATE TABLE acct (id bigint PRIMARY KEY, balance int NOT NULL)`)
	f.exec(t, `INSERT INTO acct VALUES (1, 100)`)
	f.exec(t, `CREATE TABLE parent (id bigint PRIMARY KEY)`)
	f.exec(t, `CREATE TABLE child (id bigint PRIMARY KEY, parent_id bigint NOT NULL REFERENCES parent)`)
	_, err := sqlkit.EnsureCDCFor(ctx, f.pool, sqlkit.Table{Name: "acct"}, sqlkit.Table{Name: "parent"}, sqlkit.Table{Name: "child"})
	require.NoError(t, err)
	return f
}

// runOrderScenario runs scenario in the given mode and returns the script
// and the delivered events, once the relay has nothing left to deliver and
// they passed requireCommitOrder.
func runOrderScenario(t *testing.T, mode orderMode, cfg relay.Config, scenario func(s *orderScript)) (*orderScript, []relay.Event) {
	t.Helper()
	ctx := testenv.Context(t)
	f := newOrderFixture(t, ctx)
	c := newCollector()
	s := newOrderScript(t, ctx, f)
	stall := newStallHandler()
	switch mode {
	case orderLive:
		f.startRelay(t, cfg, c)
	case orderStalled:
		f.startRelay(t, cfg, stall, c)
		t.Cleanup(stall.unblock) // before the relay is closed, should the test fail
		s.autocommit("stalling event", `INSERT INTO items VALUES (-1, 'stall')`, 1)
		select {
		case <-stall.held:
		case <-ctx.Done():
			t.Fatal("timed out waiting for the relay to deliver the stalling event")
		}
	}
	scenario(s)
	switch mode {
	case orderBacklog:
		f.startRelay(t, cfg, c)
	case orderStalled:
		require.Empty(t, c.snapshot(), "nothing delivered while the handler stalls")
		stall.unblock()
	}
	events := f.waitExactly(t, ctx, c, s.total())
	s.requireCommitOrder(t, events)
	return s, events
}

// balanceChange returns the old and new balance of an update of acct.
func balanceChange(t *testing.T, e relay.Event) (old, new int) {
	t.Helper()
	require.Equal(t, relay.ActionUpdate, e.Action)
	var changes []struct {
		Field    string
		Old, New int
	}
	require.NoError(t, json.Unmarshal(e.Changes, &changes), "%s", e.Changes)
	require.Len(t, changes, 1, "%s", e.Changes)
	require.Equal(t, "balance", changes[0].Field)
	return changes[0].Old, changes[0].New
}

// rowLockInversion: T2 takes its txid first, T1 then updates row key and
// holds its lock, T2's update of the row waits for T1, and T1 commits
// before T2. With earlyWrite, T2 takes its txid by capturing another row
// (its first event then has a smaller id than T1's); otherwise with
// pg_current_xact_id().
func rowLockInversion(s *orderScript, key, otherKey int64, earlyWrite bool) (t1, t2 *orderTx) {
	s.t.Helper()
	t2 = s.begin("T2")
	if earlyWrite {
		t2.exec(`INSERT INTO acct VALUES ($1, 0)`, 1, otherKey)
	} else {
		t2.takeTxid()
	}
	t1 = s.begin("T1")
	t1.exec(`UPDATE acct SET balance = balance + 10 WHERE id = $1`, 1, key)
	finish := t2.execBlocked(`UPDATE acct SET balance = balance + 1 WHERE id = $1`, 1, key)
	t1.commitTx()
	finish()
	t2.commitTx()
	require.Less(s.t, t2.txid, t1.txid, "the inversion happened: T2 holds the smaller txid and committed last")
	return t1, t2
}

// TestRelayDeliversRowLockWaiterAfterLockHolder proves the commit order for
// a row lock: T2 took its txid before T1, T1 updated row 1, T2's update of
// row 1 waited for T1's commit, so T2 commits last with the smaller txid.
// All of T1's events must be delivered before any of T2's (whose update
// starts from T1's balance), in each orderMode, whether T2 took its txid
// with a captured write of another row or with pg_current_xact_id().
func TestRelayDeliversRowLockWaiterAfterLockHolder(t *testing.T) {
	t.Parallel()
	for _, earlyWrite := range []bool{false, true} {
		for _, mode := range orderModes {
			t.Run(fmt.Sprintf("%s/earlyWrite=%v", mode, earlyWrite), func(t *testing.T) {
				t.Parallel()
				var t1, t2 *orderTx
				_, events := runOrderScenario(t, mode, relay.Config{}, func(s *orderScript) {
					t1, t2 = rowLockInversion(s, 1, 2, earlyWrite)
				})
				requireDeliveredBefore(t, events, t1.txid, t2.txid, "T1 holds the row lock T2 waited on")

				// The updates chain: T2's old balance is T1's new one.
				var updates []relay.Event
				for _, e := range events {
					if e.Action == relay.ActionUpdate {
						updates = append(updates, e)
					}
				}
				require.Len(t, updates, 2)
				byTxid := map[uint64]relay.Event{updates[0].Txid: updates[0], updates[1].Txid: updates[1]}
				old1, new1 := balanceChange(t, byTxid[t1.txid])
				old2, new2 := balanceChange(t, byTxid[t2.txid])
				require.Equal(t, [2]int{100, 110}, [2]int{old1, new1}, "T1's update")
				require.Equal(t, [2]int{110, 111}, [2]int{old2, new2}, "T2's update starts from T1's balance")
			})
		}
	}
}

// TestRelayDeliversParentBeforeChild proves the commit order across tables:
// Tc takes its txid first, Tp inserts the parent and commits, then Tc
// inserts a child referencing it (which it can only do because Tp
// committed). The parent's insert must be delivered before the child's, in
// each orderMode, though Tc holds the smaller txid.
func TestRelayDeliversParentBeforeChild(t *testing.T) {
	t.Parallel()
	for _, mode := range orderModes {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			var tp, tc *orderTx
			_, events := runOrderScenario(t, mode, relay.Config{}, func(s *orderScript) {
				tc = s.begin("Tc")
				tc.takeTxid()
				tp = s.begin("Tp")
				tp.exec(`INSERT INTO parent VALUES (1)`, 1)
				tp.commitTx()
				tc.exec(`INSERT INTO child VALUES (10, 1)`, 1)
				tc.commitTx()
				require.Less(t, tc.txid, tp.txid, "the inversion happened: Tc holds the smaller txid and committed last")
			})
			requireDeliveredBefore(t, events, tp.txid, tc.txid, "the child references the parent")
			var tables []string
			for _, e := range events {
				if e.Table != "items" { // the stalling event
					tables = append(tables, e.Table)
				}
			}
			require.Equal(t, []string{"parent", "child"}, tables)
		})
	}
}

// TestRelayKeepsCommitOrderAcrossBatches proves that the commit order holds
// across batch boundaries: three parent/child inversions and a row-lock
// inversion, among filler transactions, with transactions of up to three
// events, delivered in batches of 2 and of 3 so that batches cut between
// and inside transactions. Every transaction that committed before another's
// last write must be delivered wholly before it, and every transaction
// together and in order, in each orderMode.
func TestRelayKeepsCommitOrderAcrossBatches(t *testing.T) {
	t.Parallel()
	for _, batchSize := range []int{2, 3} {
		for _, mode := range orderModes {
			t.Run(fmt.Sprintf("%s/batch=%d", mode, batchSize), func(t *testing.T) {
				t.Parallel()
				s, events := runOrderScenario(t, mode, relay.Config{BatchSize: batchSize}, inversionsAmongFillers)
				t.Logf("%d events in %d transactions: %s", len(events), len(s.txs), s.describe(events))
			})
		}
	}
}

// inversionsAmongFillers: children take their txids before everything
// else, and a row-lock waiter its txid (with a captured write) too; parents,
// the lock holder and fillers commit in between, each child after its
// parent, the waiter after the holder.
func inversionsAmongFillers(s *orderScript) {
	t := s.t
	children := make([]*orderTx, 3)
	for i := range children {
		children[i] = s.begin(fmt.Sprintf("child%d", i))
		children[i].takeTxid()
	}
	waiter := s.begin("lock waiter")
	waiter.exec(`INSERT INTO acct VALUES (2, 0)`, 1)

	fillers := 0
	fill := func(rows int) {
		fillers++
		s.autocommit(fmt.Sprintf("filler%d", fillers),
			`INSERT INTO items SELECT g, 'filler' FROM generate_series($1::bigint, $1 + $2 - 1) g`, rows, fillers*100, rows)
	}
	var parents []*orderTx
	for i, c := range children {
		fill(1 + i%2)
		p := s.begin(fmt.Sprintf("parent%d", i))
		p.exec(`INSERT INTO parent VALUES ($1)`, 1, i)
		p.exec(`INSERT INTO items VALUES ($1, 'parent')`, 1, 10_000+i)
		p.commitTx()
		parents = append(parents, p)
		fill(2)
		c.exec(`INSERT INTO child VALUES ($1, $2)`, 1, 10*i, i)
		c.exec(`INSERT INTO child VALUES ($1, $3), ($2, $3)`, 2, 10*i+1, 10*i+2, i)
		c.commitTx()

		if i == 1 {
			holder := s.begin("lock holder")
			holder.exec(`UPDATE acct SET balance = balance + 10 WHERE id = 1`, 1)
			finish := waiter.execBlocked(`UPDATE acct SET balance = balance + 1 WHERE id = 1`, 1)
			holder.commitTx()
			finish()
			fill(1)
			waiter.exec(`UPDATE acct SET balance = balance + 1 WHERE id = 2`, 1)
			waiter.commitTx()
			require.Less(t, waiter.txid, holder.txid, "the row-lock inversion happened")
		}
	}
	fill(3)
	for i, c := range children {
		require.Less(t, c.txid, parents[i].txid, "the inversion happened: child%d holds the smaller txid", i)
	}
}
