package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/relay"
)

// binDir holds the subscriber binary the subprocess tests build.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "subscriber-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildErr  error
)

// subscriberBinary builds the command once, for the tests that run it as a
// process of its own (to kill it), and returns its path.
func subscriberBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(binDir, "subscriber")
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return bin
}

// lineLog collects what a subscriber writes, for a test to wait on.
type lineLog struct {
	mu      sync.Mutex
	buf     []byte
	changed chan struct{} // closed, and replaced, at each write and at the end
	ended   bool
}

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{})} }

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

// end records that nothing more will be written.
func (l *lineLog) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ended = true
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}

// lines returns the complete lines written so far.
func (l *lineLog) lines() []string {
	s := l.String()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return strings.Split(s[:i], "\n")
	}
	return nil
}

// waitUntil waits until cond holds for what was written, failing the test
// when the writer ends first or ctx does.
func (l *lineLog) waitUntil(t *testing.T, ctx context.Context, what string, cond func(string) bool) {
	t.Helper()
	for {
		l.mu.Lock()
		s, ended, changed := string(l.buf), l.ended, l.changed
		l.mu.Unlock()
		if cond(s) {
			return
		}
		if ended {
			t.Fatalf("ended before %s; got:\n%s", what, s)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("never %s; got:\n%s", what, s)
		}
	}
}

// waitFor waits until s was written.
func (l *lineLog) waitFor(t *testing.T, ctx context.Context, s string) {
	t.Helper()
	l.waitUntil(t, ctx, fmt.Sprintf("saw %q", s), func(got string) bool { return strings.Contains(got, s) })
}

// waitLines waits until n lines were written and returns them.
func (l *lineLog) waitLines(t *testing.T, ctx context.Context, n int) []string {
	t.Helper()
	l.waitUntil(t, ctx, fmt.Sprintf("saw %d lines", n), func(got string) bool { return strings.Count(got, "\n") >= n })
	return l.lines()
}

// appRun is the command running in the test's process.
type appRun struct {
	stdout, stderr *lineLog
	cancel         context.CancelFunc
	done           chan error
}

// runApp runs the command with args (after the command name) in a
// goroutine.
func runApp(ctx context.Context, args ...string) *appRun {
	ctx, cancel := context.WithCancel(ctx)
	r := &appRun{stdout: newLineLog(), stderr: newLineLog(), cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := newApp(r.stdout, r.stderr).RunContext(ctx, append([]string{"subscriber"}, args...))
		r.stdout.end()
		r.stderr.end()
		r.done <- err
	}()
	return r
}

// wait waits for the command to end by itself and returns its error.
func (r *appRun) wait(t *testing.T, ctx context.Context) error {
	t.Helper()
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		t.Fatalf("the subscriber did not exit; stderr:\n%s", r.stderr)
		return nil
	}
}

// stop stops the command as a signal would and returns its error.
func (r *appRun) stop(t *testing.T, ctx context.Context) error {
	t.Helper()
	r.cancel()
	return r.wait(t, ctx)
}

// proc is the command running as a process of its own.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *lineLog
	exited         chan struct{}
	err            error
}

// startProc starts the built command with args; it is killed when the test
// ends.
func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{stdout: newLineLog(), stderr: newLineLog(), exited: make(chan struct{})}
	p.cmd = exec.Command(subscriberBinary(t), args...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	require.NoError(t, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		p.stdout.end()
		p.stderr.end()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// signal sends sig to the process and waits for it to exit.
func (p *proc) signal(t *testing.T, ctx context.Context, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig))
	select {
	case <-p.exited:
	case <-ctx.Done():
		t.Fatal("the subscriber process did not exit")
	}
}

// event returns the event JSON of a change to public.table, numbered n.
func event(table string, action relay.Action, n int) string {
	e := relay.Event{ID: int64(n), Txid: 7, Timestamp: time.Date(2026, 11, 22, 10, 1, 2, 0, time.UTC),
		Schema: "public", Table: table, Action: action, Key: json.RawMessage(fmt.Sprint(n)),
		Data: json.RawMessage(fmt.Sprintf(`{"id":%d,"name":"n%d"}`, n, n))}
	if action == relay.ActionUpdate {
		e.Changes = json.RawMessage(fmt.Sprintf(`[{"field":"name","old":"o%d","new":"n%d"}]`, n, n))
	}
	b, err := e.MarshalJSON()
	if err != nil {
		panic(err)
	}
	return string(b)
}

// inserts returns the event JSON of inserts from to to (inclusive).
func inserts(table string, from, to int) []string {
	var out []string
	for n := from; n <= to; n++ {
		out = append(out, event(table, relay.ActionInsert, n))
	}
	return out
}
