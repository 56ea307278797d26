package relay_test

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	redissink "github.com/pgrelay/pgrelay/handlers/redis"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

// childStreamEnv, set next to childEnv, makes the child relay append every
// event to the Redis stream it names (stream mode) before printing its id.
const childStreamEnv = "PGRELAY_TEST_RELAY_CHILD_STREAM"

// streamChildSink is the child's stream-mode Redis handler.
func streamChildSink(stream string) (*redissink.Handler, error) {
	opts, err := goredis.ParseURL(testenv.RedisURL())
	if err != nil {
		return nil, err
	}
	return redissink.New(redissink.Config{
		Client:  goredis.NewClient(opts),
		Mode:    redissink.ModeStream,
		Channel: func(*relay.Event) string { return stream },
	})
}

// TestStreamExactlyOnceAcrossKillsAndTakeover drains 30,000 events from 30
// transactions into a Redis stream through relay processes of one name:
// the active one is killed with SIGKILL mid-drain and the standby takes
// over, then that one is killed too and a new process finishes. The
// processes deliver some events twice; the stream holds every event
// exactly once, in delivery order (here: id order, the transactions having
// committed one after another).
func TestStreamExactlyOnceAcrossKillsAndTakeover(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	const txns, perTxn = 30, 1000
	for i := range txns {
		f.exec(t, `INSERT INTO items SELECT g, 'x' FROM generate_series($1::bigint, $2::bigint) g`,
			i*perTxn+1, (i+1)*perTxn)
	}
	rdb := testenv.Redis(t)
	stream := testenv.UniqueName("pgrelay-test-stream-")
	t.Cleanup(func() {
		rdb.Del(context.Background(), stream, redissink.BookKey(stream, relay.DefaultName))
	})

	tl := newTally()
	var delivered [4]atomic.Int64 // by label
	start := func(label int) *mirrorChild {
		c := startChild(t, f.url, childTimingEnv+"=1", childStreamEnv+"="+stream)
		go func() {
			for line := range c.lines {
				delivered[label].Add(1)
				tl.add(label, parseID(t, line))
			}
		}()
		return c
	}
	children := map[int]*mirrorChild{1: start(1), 2: start(2)}
	// activeAfter waits until one child, other than skip, has delivered
	// 5,000 events and returns its label.
	activeAfter := func(skip int) int {
		var label int
		tl.waitUntil(t, ctx, "delivery to go on", func() bool {
			for l := 1; l <= 2; l++ {
				if l != skip && delivered[l].Load() >= 5_000 {
					label = l
					return true
				}
			}
			return false
		})
		return label
	}
	first := activeAfter(0)
	require.NoError(t, children[first].cmd.Process.Signal(syscall.SIGKILL))
	second := activeAfter(first)
	require.NotEqual(t, first, second, "the standby took over")
	require.NoError(t, children[second].cmd.Process.Signal(syscall.SIGKILL))
	children[3] = start(3)
	f.waitDelivered(t, ctx, "")

	ids := testenv.StreamEventIDs(t, ctx, rdb, stream)
	want := outboxIDs(t, ctx, f.pool)
	require.Len(t, want, txns*perTxn)
	require.Equal(t, want, ids, "every event once, in order")
	t.Logf("the relays delivered %d events more than once; the stream has none twice", tl.duplicates())
}
