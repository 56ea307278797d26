package relay_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/relay"
)

// leaseTestConfig is the configuration of the leadership tests' relays, in
// this process and in children (childTimingEnv): fast timings, so that a
// takeover takes seconds, with a Timeout generous enough for a loaded CI
// machine, and small batches, so that "at most one batch" means something.
func leaseTestConfig(url string) relay.Config {
	return relay.Config{
		DatabaseURL:      url,
		BatchSize:        leaseBatchSize,
		WatchdogInterval: 300 * time.Millisecond,
		Timeout:          time.Second,
		RetryInterval:    200 * time.Millisecond,
	}
}

const leaseBatchSize = 20

// tally records, for every event id any relay delivered, how often and when
// it first arrived, and from which relay (a label the test chooses).
type tally struct {
	mu      sync.Mutex
	count   map[int64]int
	first   map[int64]arrival
	total   int
	batches []arrival // every add, in order
	changed chan struct{}
}

type arrival struct {
	at    time.Time
	label int
}

func newTally() *tally {
	return &tally{count: map[int64]int{}, first: map[int64]arrival{}, changed: make(chan struct{}, 1)}
}

func (t *tally) add(label int, ids ...int64) {
	now := time.Now()
	t.mu.Lock()
	t.batches = append(t.batches, arrival{now, label})
	for _, id := range ids {
		t.count[id]++
		t.total++
		if _, ok := t.first[id]; !ok {
			t.first[id] = arrival{now, label}
		}
	}
	t.mu.Unlock()
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

// handler returns an EventHandler that adds what it is given under label.
func (t *tally) handler(label int) relay.EventHandler {
	return &tallyHandler{t: t, label: label}
}

type tallyHandler struct {
	relay.BaseHandler
	t     *tally
	label int
	// hold, when set, is called with each batch before it is accepted.
	hold func()
}

func (h *tallyHandler) OnEvents(_ context.Context, events []relay.Event) error {
	if h.hold != nil {
		h.hold()
	}
	ids := make([]int64, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	h.t.add(h.label, ids...)
	return nil
}

// waitUntil blocks until cond holds, failing the test when ctx ends first.
func (t *tally) waitUntil(tb testing.TB, ctx context.Context, what string, cond func() bool) {
	tb.Helper()
	for {
		t.mu.Lock()
		ok := cond()
		t.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-t.changed:
		case <-ctx.Done():
			tb.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitIDs waits until every id in ids has arrived and returns the earliest
// first arrival among them.
func (t *tally) waitIDs(tb testing.TB, ctx context.Context, ids []int64) arrival {
	tb.Helper()
	t.waitUntil(tb, ctx, strconv.Itoa(len(ids))+" events", func() bool {
		for _, id := range ids {
			if t.count[id] == 0 {
				return false
			}
		}
		return true
	})
	t.mu.Lock()
	defer t.mu.Unlock()
	earliest := t.first[ids[0]]
	for _, id := range ids {
		if a := t.first[id]; a.at.Before(earliest.at) {
			earliest = a
		}
	}
	return earliest
}

// firstFromOther returns when a relay other than label first delivered
// after since, if one did.
func (t *tally) firstFromOther(label int, since time.Time) (time.Time, bool) {
	for _, b := range t.batches {
		if b.label != label && b.at.After(since) {
			return b.at, true
		}
	}
	return time.Time{}, false
}

// deliveredSince reports whether relay label delivered after since.
func (t *tally) deliveredSince(label int, since time.Time) bool {
	for i := len(t.batches) - 1; i >= 0 && t.batches[i].at.After(since); i-- {
		if t.batches[i].label == label {
			return true
		}
	}
	return false
}

// duplicates is how many deliveries repeated an event.
func (t *tally) duplicates() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total - len(t.count)
}

// outboxIDs returns the ids of every event committed to the outbox.
func outboxIDs(tb testing.TB, ctx context.Context, pool *pgxpool.Pool) []int64 {
	rows, _ := pool.Query(ctx, `SELECT DISTINCT id FROM cdc.events ORDER BY id`)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(tb, err)
	return ids
}

// idsAfter returns the outbox ids above after.
func idsAfter(ids []int64, after int64) []int64 {
	var out []int64
	for _, id := range ids {
		if id > after {
			out = append(out, id)
		}
	}
	return out
}

// relayBackends returns the pids of the relays' backends in the database.
func relayBackends(tb testing.TB, ctx context.Context, pool *pgxpool.Pool) []int32 {
	rows, _ := pool.Query(ctx, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND application_name LIKE 'pgrelay %' ORDER BY pid`)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	require.NoError(tb, err)
	return pids
}

// waitBackends waits until the database holds exactly n relay backends:
// the abandoned ones were ended, and none stands in the way.
func waitBackends(tb testing.TB, ctx context.Context, pool *pgxpool.Pool, n int) {
	tb.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		pids := relayBackends(tb, ctx, pool)
		if len(pids) == n {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			tb.Fatalf("timed out waiting for %d relay backends; have %d: %v", n, len(pids), pids)
		}
	}
}

// leaseHolderPID returns the process id of the relay that holds the lease
// of the default name, 0 when none does.
func leaseHolderPID(tb testing.TB, ctx context.Context, pool *pgxpool.Pool) int {
	var pid *int
	err := pool.QueryRow(ctx, `SELECT i.pid FROM cdc.relay_cursor c
		JOIN cdc.relay_instance i ON i.name = c.name AND i.instance = c.lease_holder
		WHERE c.name = $1 AND c.lease_expires_at > now()`, relay.DefaultName).Scan(&pid)
	if err != nil || pid == nil {
		return 0
	}
	return *pid
}

// startIDChild starts the test binary as a relay child with the leadership
// tests' configuration, printing each delivered event id.
func startIDChild(t *testing.T, url string) *mirrorChild {
	return startChild(t, url, childTimingEnv+"=1")
}

// parseID turns a line of a child's output into an event id.
func parseID(tb testing.TB, line []byte) int64 {
	id, err := strconv.ParseInt(string(line), 10, 64)
	require.NoError(tb, err, "child output %q", line)
	return id
}
