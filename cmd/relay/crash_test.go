package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/route"
)

// relayChildEnv, when set, makes the test binary run main with its
// arguments instead of the tests: TestCLIRunToEverySinkSurvivesSIGKILL
// kills that process.
const relayChildEnv = "PGRELAY_CLI_TEST_CHILD"

// startRelayProcess runs `relay args...` as a process of its own (this test
// binary in relayChildEnv mode) and returns it; its output goes to out.
func startRelayProcess(t *testing.T, out *bytes.Buffer, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), relayChildEnv+"=1")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// sinkEvent is what the test reads of an event, whichever sink brought it.
type sinkEvent struct {
	EventID int64  `json:"event_id"`
	Schema  string `json:"schema"`
	Table   string `json:"table"`
}

// sinkLog records the events a sink received, in arrival order.
type sinkLog struct {
	mu     sync.Mutex
	events []sinkEvent
}

func (l *sinkLog) add(t *testing.T, raw []byte) {
	var e sinkEvent
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Errorf("not an event: %s", raw)
		return
	}
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

// distinct returns how many different events arrived.
func (l *sinkLog) distinct() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := map[int64]bool{}
	for _, e := range l.events {
		seen[e.EventID] = true
	}
	return len(seen)
}

// check: every one of want arrived, and, keeping each event's first
// arrival, each table's events in the order they were committed (with one
// writer committing in turn, event id order). dupOK says whether repeats
// may arrive at all (at least once) or not (exactly once).
func (l *sinkLog) check(t *testing.T, sink string, want []int64, dupOK bool) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := map[int64]bool{}
	last := map[string]int64{}
	repeats := 0
	for _, e := range l.events {
		if seen[e.EventID] {
			repeats++
			continue
		}
		seen[e.EventID] = true
		tbl := e.Schema + "." + e.Table
		require.Greater(t, e.EventID, last[tbl], "%s: event %d of %s after %d", sink, e.EventID, tbl, last[tbl])
		last[tbl] = e.EventID
	}
	got := make([]int64, 0, len(seen))
	for id := range seen {
		got = append(got, id)
	}
	slices.Sort(got)
	require.Equal(t, want, got, "%s: exactly the committed events", sink)
	if !dupOK {
		require.Zero(t, repeats, "%s: no event twice", sink)
	}
	t.Logf("%s: %d events, %d repeated after the crash", sink, len(got), repeats)
}

// TestCLIRunToEverySinkSurvivesSIGKILL: relay run delivers to NATS
// JetStream, RabbitMQ, a webhook and SSE at once, is killed with SIGKILL
// mid-drain, and a new relay process finishes the work. Every sink then
// has every event, each table's in commit order; JetStream holds each
// event once (Nats-Msg-Id), and SSE replays each once from position 0.
func TestCLIRunToEverySinkSurvivesSIGKILL(t *testing.T) {
	ctx := testenv.Context(t)
	dbURL := testenv.NewDatabase(t)
	pool := testenv.Pool(t, dbURL)
	items, notes := testenv.UniqueName("crash_items_"), testenv.UniqueName("crash_notes_")
	_, err := pool.Exec(ctx, `CREATE TABLE `+items+` (id int PRIMARY KEY, v int); CREATE TABLE `+notes+` (id int PRIMARY KEY, v int)`)
	require.NoError(t, err)
	_, _, err = runCLI(ctx, "--database-url", dbURL, "ensure-cdc", items, notes)
	require.NoError(t, err)
	// One writer, transaction after transaction: inserts into both tables,
	// then updates of the same rows, 12,000 events in 240 transactions.
	_, err = pool.Exec(ctx, fmt.Sprintf(`DO $$ BEGIN
		FOR i IN 0..79 LOOP
			INSERT INTO %[1]s SELECT g, 0 FROM generate_series(i * 50 + 1, i * 50 + 50) g; COMMIT;
			INSERT INTO %[2]s SELECT g, 0 FROM generate_series(i * 50 + 1, i * 50 + 50) g; COMMIT;
		END LOOP;
		FOR i IN 0..79 LOOP
			UPDATE %[1]s SET v = v + 1 WHERE id BETWEEN i * 50 + 1 AND i * 50 + 50; COMMIT;
		END LOOP; END $$`, items, notes))
	require.NoError(t, err)
	var want []int64
	rows, err := pool.Query(ctx, `SELECT id FROM cdc.events ORDER BY id`)
	require.NoError(t, err)
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		want = append(want, id)
	}
	require.NoError(t, rows.Err())
	require.Len(t, want, 12000)

	var hook sinkLog
	// The webhook holds the first relay once 2,000 events are in, so that
	// it is killed mid-drain for certain; the second goes through.
	held, release := make(chan struct{}), make(chan struct{})
	var hold sync.Once
	srv := webhookReceiver(t, func(raw json.RawMessage) {
		hook.add(t, raw)
		if hook.distinct() < 2000 {
			return
		}
		select {
		case <-release:
		default:
			hold.Do(func() { close(held) })
			<-release
		}
	})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	defer releaseOnce() // before the server's cleanup, which waits for its handlers

	ch, exchange, queue := rabbitQueue(t)
	var rabbit sinkLog
	deliveries, err := ch.Consume(queue, "", true, true, false, false, nil)
	require.NoError(t, err)
	go func() {
		for d := range deliveries {
			rabbit.add(t, d.Body)
		}
	}()
	js, stream := jetStream(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sseAddr := ln.Addr().String()
	require.NoError(t, ln.Close())

	args := []string{"--database-url", dbURL, "--log-level", "warn", "run", "--batch-size", "200",
		"--sink", "nats://127.0.0.1:4222?stream=" + stream + "&subject=" + route.Channel(route.DefaultSchema, "*"),
		"--sink", "amqp://guest:guest@127.0.0.1:5672/?exchange=" + exchange,
		"--sink", srv.URL + "/hook", "--webhook-batch", "50",
		"--sse-addr", sseAddr}
	var out1, out2 bytes.Buffer
	first := startRelayProcess(t, &out1, args...)
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the first relay did not deliver 2,000 events")
	}
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_ = first.Wait()
	releaseOnce()
	require.Less(t, hook.distinct(), len(want), "killed mid-drain")

	second := startRelayProcess(t, &out2, args...)
	testenv.WaitFor(t, ctx, "the second relay delivered the rest", func() bool {
		return hook.distinct() == len(want) && rabbit.distinct() == len(want)
	})
	info, err := js.StreamInfo(stream)
	require.NoError(t, err)
	require.EqualValues(t, len(want), info.State.Msgs, "JetStream holds each event once")

	var jet sinkLog
	sub, err := js.SubscribeSync(route.Channel(route.DefaultSchema, "*"), natsgo.BindStream(stream), natsgo.OrderedConsumer())
	require.NoError(t, err)
	for range want {
		m, err := sub.NextMsg(10 * time.Second)
		require.NoError(t, err)
		jet.add(t, m.Data)
	}
	require.NoError(t, sub.Unsubscribe())

	sse := readSSE(t, ctx, "http://"+sseAddr+"/events?last_event_id=0", len(want))

	require.NoError(t, second.Process.Signal(syscall.SIGTERM))
	require.NoError(t, second.Wait(), "second relay: %s", out2.String())

	hook.check(t, "webhook", want, true)
	rabbit.check(t, "rabbitmq", want, true)
	jet.check(t, "jetstream", want, false)
	sse.check(t, "sse", want, false)
}

// readSSE reads n messages of the stream at url, checking that positions
// follow each other from 1.
func readSSE(t *testing.T, ctx context.Context, url string, n int) *sinkLog {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var got sinkLog
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	pos := int64(0)
	for len(got.events) < n && sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "id: "); ok {
			p, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			require.Equal(t, pos+1, p, "SSE positions without gap or repeat")
			pos = p
		} else if v, ok := strings.CutPrefix(line, "data: "); ok {
			got.add(t, []byte(v))
		}
	}
	require.NoError(t, sc.Err())
	require.Len(t, got.events, n)
	return &got
}
