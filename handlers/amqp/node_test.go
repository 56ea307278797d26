package amqp_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	amqpsink "github.com/pgrelay/pgrelay/handlers/amqp"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

// node is a throw-away RabbitMQ node of one test, on ports of its own, with
// its data in a temporary directory, so that it can be stopped, started
// again and alarmed without touching the shared broker.
type node struct {
	t    testing.TB
	name string
	dir  string
	port int
	dist int
	URL  string
}

// newNode starts a node, stopped and removed when the test ends. The test
// is skipped where rabbitmq-server is not installed.
func newNode(t testing.TB) *node {
	t.Helper()
	if _, err := exec.LookPath("rabbitmq-server"); err != nil {
		t.Skip("rabbitmq-server is not installed: no throw-away broker to restart")
	}
	dir := t.TempDir()
	n := &node{t: t, name: fmt.Sprintf("pgrelay-test-%d@localhost", rand.Int64N(1e9)),
		dir: dir, port: freePort(t), dist: freePort(t)}
	n.URL = fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", n.port)
	// The server runs as the rabbitmq user, which must write there. The
	// machine's rabbitmq.conf names the shared broker's listener, so the
	// node gets a config of its own, and no plugins (no second management
	// listener).
	conf := filepath.Join(dir, "rabbitmq.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf("listeners.tcp.local = 127.0.0.1:%d\nloopback_users = none\n", n.port)), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "enabled_plugins"), []byte("[].\n"), 0o644))
	if u, err := user.Lookup("rabbitmq"); err == nil && os.Geteuid() == 0 {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, p := range []string{filepath.Dir(dir), dir} {
			require.NoError(t, os.Chown(p, uid, gid))
		}
	}
	t.Cleanup(func() {
		_ = n.ctl("stop")
		// Files the server wrote are the rabbitmq user's; root removes
		// them, TempDir's own cleanup then finds nothing.
		_ = os.RemoveAll(dir)
	})
	n.start()
	return n
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (n *node) env() []string {
	return append(os.Environ(),
		"RABBITMQ_NODENAME="+n.name,
		"RABBITMQ_NODE_PORT="+strconv.Itoa(n.port),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(n.dist),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(n.dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(n.dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE="+n.dir,
		"RABBITMQ_LOG_BASE="+n.dir,
	)
}

// start starts the node and waits until it takes AMQP connections.
func (n *node) start() {
	n.t.Helper()
	cmd := exec.Command("rabbitmq-server", "-detached")
	cmd.Env = n.env()
	out, err := cmd.CombinedOutput()
	require.NoError(n.t, err, "rabbitmq-server: %s", out)
	deadline := time.Now().Add(90 * time.Second)
	for {
		conn, err := amqp091.Dial(n.URL)
		if err == nil {
			_ = conn.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(n.dir, n.name+".log"))
			n.t.Fatalf("node %s did not start: %v\n%s", n.name, err, tail(log, 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stop stops the node and waits until its port is closed.
func (n *node) stop() {
	n.t.Helper()
	require.NoError(n.t, n.ctl("stop"))
	require.Eventually(n.t, func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.port), time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err != nil
	}, 30*time.Second, 100*time.Millisecond)
}

func (n *node) ctl(args ...string) error {
	cmd := exec.Command("rabbitmqctl", append([]string{"-n", n.name}, args...)...)
	cmd.Env = n.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("rabbitmqctl %v: %w: %s", args, err, out)
	}
	return nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// TestBrokerRestart: confirmed events survive a broker restart (persistent
// messages in a durable queue), the batch sent while the broker is down
// fails, and once it is back the handler reconnects by itself and the
// retried batch arrives, after the first, in order.
func TestBrokerRestart(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	n := newNode(t)
	exchange, queue := "pgrelay-restart", "pgrelay-restart-q"
	h := newHandler(t, amqpsink.Config{URL: n.URL, Exchange: exchange, Timeout: 2 * time.Second})
	require.NoError(t, h.OnStart(ctx))
	ch := admin(t, n.URL)
	_, err := ch.QueueDeclare(queue, true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(queue, "#", exchange, false, nil))
	dctx := relay.WithDelivery(ctx, relay.Delivery{Name: "r", Token: 1})
	require.NoError(t, h.OnEvents(dctx, events(1, 50)))

	n.stop()
	require.Error(t, h.OnEvents(dctx, events(51, 100)), "a batch to a stopped broker is not delivered")
	n.start()

	// The relay retries with backoff; the node may need a moment before
	// its queues are back.
	var lastErr error
	require.Eventually(t, func() bool {
		lastErr = h.OnEvents(dctx, events(51, 100))
		return lastErr == nil
	}, 30*time.Second, 200*time.Millisecond, "the handler does not recover: %v", lastErr)

	ch = admin(t, n.URL)
	var want []int64
	for id := int64(1); id <= 100; id++ {
		want = append(want, id)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got := receive(t, rctx, ch, queue, 100)
	require.Equal(t, want, ids(t, got))
	require.Equal(t, "r:1", got[0].MessageId)
}

// TestConfirmTimeout: a broker that blocks publishers (here a memory
// alarm, as when it runs out of memory or disk) never confirms; the batch
// fails after Config.Timeout instead of counting as delivered, and is
// delivered once the alarm clears.
func TestConfirmTimeout(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	n := newNode(t)
	exchange, queue := "pgrelay-alarm", "pgrelay-alarm-q"
	const timeout = 1500 * time.Millisecond
	h := newHandler(t, amqpsink.Config{URL: n.URL, Exchange: exchange, Timeout: timeout})
	require.NoError(t, h.OnStart(ctx))
	ch := admin(t, n.URL)
	_, err := ch.QueueDeclare(queue, true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(queue, "#", exchange, false, nil))

	require.NoError(t, n.ctl("set_vm_memory_high_watermark", "0"))
	err = h.OnEvents(ctx, events(1, 10))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Contains(t, err.Error(), "not confirmed within")

	require.NoError(t, n.ctl("set_vm_memory_high_watermark", "0.4"))
	var lastErr error
	require.Eventually(t, func() bool {
		lastErr = h.OnEvents(ctx, events(1, 10))
		return lastErr == nil
	}, 30*time.Second, 100*time.Millisecond, "not delivered after the alarm: %v", lastErr)
	got := ids(t, receive(t, ctx, ch, queue, 10))
	// The blocked batch may have reached the queue when the alarm
	// cleared: at least once, and each copy in order.
	require.Equal(t, int64(1), got[0])
}
