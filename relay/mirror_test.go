package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
)

// childJSONEnv, set next to childEnv, makes the child relay print each event
// whole, one JSON line in the wire format, in batches of mirrorBatchSize.
const childJSONEnv = "PGRELAY_TEST_RELAY_CHILD_JSON"

// mirrorBatchSize is small so that the backlog takes many batches, cut
// anywhere in pgbench's transactions.
const mirrorBatchSize = 100

// tpcbSeconds is how long pgbench's writers run (pgbench -T) in each mode.
const tpcbSeconds = 5

// TestRelayMirrorsTPCB proves that a consumer applying events in the order
// the relay delivers them ends with an exact copy of the tables, under
// pgbench's TPC-B load: 8 clients update random accounts, the 10 tellers and
// the one branch, and the row locks they queue on make transactions commit
// in another order than they took their txids. Every update's old values
// must be what the previous event of that row left (the chain check), and
// afterwards every row an event named must equal the database's. The relay
// runs in another process: live during the writes, draining the backlog
// afterwards, or killed with SIGKILL mid-drain and started again.
func TestRelayMirrorsTPCB(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("pgbench"); err != nil {
		t.Skip("pgbench is not on PATH (Debian: apt-get install postgresql)")
	}
	if out, err := exec.Command("pgbench", "--version").CombinedOutput(); err != nil {
		// Debian's /usr/bin/pgbench is a wrapper, there even when the
		// real program (in the server package) is not.
		t.Skipf("pgbench does not run (Debian: apt-get install postgresql): %v: %s", err, out)
	}
	for _, mode := range []string{"live", "backlog", "killed"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := testenv.Context(t)
			url := newTPCBDatabase(t, ctx)
			pool := testenv.Pool(t, url)
			m := newMirror()
			var child *mirrorChild
			switch mode {
			case "live":
				child = startMirrorChild(t, url)
				waitRelayConnected(t, ctx, pool, m, child)
				runTPCB(t, ctx, url)
			case "backlog":
				runTPCB(t, ctx, url)
				child = startMirrorChild(t, url)
			case "killed":
				runTPCB(t, ctx, url)
				total := countEvents(t, ctx, pool)
				first := startMirrorChild(t, url)
				m.readUntil(t, ctx, first, total/3)
				require.NoError(t, first.cmd.Process.Signal(syscall.SIGKILL))
				m.drain(t, first) // what the pipe still holds was delivered too
				require.Less(t, len(m.applied), total, "killed before the end of the drain")
				t.Logf("SIGKILL after %d of %d events", len(m.applied), total)
				child = startMirrorChild(t, url)
			}
			total := countEvents(t, ctx, pool)
			m.readUntil(t, ctx, child, total)
			require.NoError(t, child.cmd.Process.Signal(syscall.SIGTERM))
			m.drain(t, child)

			t.Logf("%s: %d events received, %d distinct (the outbox has %d), %d duplicates%s, %d transactions",
				mode, m.received, len(m.applied), total, m.duplicates, m.duplicateRange(), len(m.txids))
			mismatches := m.compare(t, ctx, pool)
			require.Zerof(t, len(m.violations)+len(mismatches),
				"%d chain violations (an event's old values are not what the previous event left)%s\n"+
					"%d rows differ from the database%s",
				len(m.violations), firstFew(m.violations), len(mismatches), firstFew(mismatches))
		})
	}
}

// newTPCBDatabase makes a database with pgbench's tables at scale 1 and CDC
// on all four; pgbench_history gets the primary key CDC needs.
func newTPCBDatabase(t *testing.T, ctx context.Context) string {
	url := testenv.NewMigratedDatabase(t)
	out, err := exec.CommandContext(ctx, "pgbench", "-i", "-s", "1", "-q", url).CombinedOutput()
	require.NoError(t, err, "pgbench -i: %s", out)
	pool := testenv.Pool(t, url)
	_, err = pool.Exec(ctx, `ALTER TABLE pgbench_history ADD COLUMN hid bigserial PRIMARY KEY`)
	require.NoError(t, err)
	var tables int
	require.NoError(t, pool.QueryRow(ctx,
		`SELECT count(cdc.ensure_cdc_for(t)) FROM cdc.all_tables() t`).Scan(&tables))
	require.Equal(t, len(tpcbKeys), tables, "CDC on pgbench's four tables")
	return url
}

// runTPCB runs pgbench's built-in TPC-B script with 8 clients for
// tpcbSeconds.
func runTPCB(t *testing.T, ctx context.Context, url string) {
	out, err := exec.CommandContext(ctx, "pgbench", "-n", "-c", "8", "-j", "2", "-T", strconv.Itoa(tpcbSeconds), url).CombinedOutput()
	require.NoError(t, err, "pgbench: %s", out)
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, "number of transactions actually processed") {
			t.Logf("pgbench: %s", strings.TrimSpace(line))
		}
	}
}

func countEvents(t *testing.T, ctx context.Context, pool *pgxpool.Pool) int {
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(DISTINCT id) FROM cdc.events`).Scan(&n))
	return n
}

// waitRelayConnected waits until the child's relay has opened its watchdog
// connection, which it does after its LISTEN.
func waitRelayConnected(t *testing.T, ctx context.Context, pool *pgxpool.Pool, m *mirror, c *mirrorChild) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'pgrelay watchdog'`).Scan(&n))
		if n > 0 {
			return
		}
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatalf("the relay child exited before connecting: %v", c.err)
			}
			m.apply(t, line)
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("timed out waiting for the relay child to connect")
		}
	}
}

// mirrorChild is the test binary re-executed as a relay printing JSON
// events (TestMain, runChild). lines is closed once its stdout ended and it
// was waited for; err is then Wait's error.
type mirrorChild struct {
	cmd   *exec.Cmd
	lines chan []byte
	err   error
}

// wholeLines splits at newlines like bufio.ScanLines, but drops a last line
// that has none: a child killed with SIGKILL in the middle of writing a
// batch leaves half an event in the pipe. That batch was not accepted, so
// the next relay delivers it again.
func wholeLines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF {
		return len(data), nil, nil
	}
	return 0, nil, nil
}

// startMirrorChild starts a relay child printing JSON events; it is killed
// when the test ends, if it still runs.
func startMirrorChild(t *testing.T, url string) *mirrorChild {
	return startChild(t, url, childJSONEnv+"=1")
}

// startChild starts a relay child with env added to the environment.
func startChild(t *testing.T, url string, env ...string) *mirrorChild {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"="+url), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	c := &mirrorChild{cmd: cmd, lines: make(chan []byte)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
		sc.Split(wholeLines)
		for sc.Scan() {
			c.lines <- bytes.Clone(sc.Bytes())
		}
		c.err = cmd.Wait() // only once everything was read
		if sc.Err() != nil {
			c.err = fmt.Errorf("reading its stdout: %w (exit: %v)", sc.Err(), c.err)
		}
		close(c.lines)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // fails once it exited; the drain below ends either way
		for range c.lines {
		}
	})
	return c
}

// readUntil applies the child's events until n distinct ones were applied.
func (m *mirror) readUntil(t *testing.T, ctx context.Context, c *mirrorChild, n int) {
	for len(m.applied) < n {
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatalf("the relay child exited after %d of %d events: %v", len(m.applied), n, c.err)
			}
			m.apply(t, line)
		case <-ctx.Done():
			t.Fatalf("timed out with %d of %d events applied", len(m.applied), n)
		}
	}
}

// drain applies what the child printed until it exited.
func (m *mirror) drain(t *testing.T, c *mirrorChild) {
	for line := range c.lines {
		m.apply(t, line)
	}
}

// firstFew formats the first few of a list of problems.
func firstFew(problems []string) string {
	const few = 5
	if len(problems) == 0 {
		return ""
	}
	s := ", first:\n\t" + strings.Join(problems[:min(few, len(problems))], "\n\t")
	if len(problems) > few {
		s += "\n\t…"
	}
	return s
}
