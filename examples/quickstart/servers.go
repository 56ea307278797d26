package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/pgrelay/pgrelay/relay"
)

// script starts and stops the throw-away servers; test.sh uses its
// functions too. Its path is relative to the repository root.
const script = "scripts/throwaway.sh"

// checkFor bounds how long a server may take to answer before the tour.
const checkFor = 5 * time.Second

// setting is one server's URL and where it comes from.
type setting struct {
	url  string
	from string // the environment variable that set url; "" for the default
}

// servers are the PostgreSQL and Redis the tour runs against.
type servers struct {
	databaseURL string
	redisURL    string
	// dir holds the files of the throw-away servers started for the tour,
	// and script is the throwaway.sh that started them; both are "" when
	// there are none.
	dir, script string
}

// chooseServers picks the servers: those the environment names, which must
// answer; else those at the default addresses, when something listens
// there; else throw-away ones, started by scripts/throwaway.sh in a
// temporary directory. Call stop afterwards in every case.
func chooseServers(ctx context.Context) (*servers, error) {
	db := lookup(defaultDatabaseURL, "PG_DATABASE_URL", "DATABASE_URL")
	rd := lookup(defaultRedisURL, "REDIS_URL")
	s := &servers{databaseURL: db.url, redisURL: rd.url}
	if db.from != "" {
		if err := pingPostgres(ctx, db.url); err != nil {
			return nil, connectError("PostgreSQL", db, err)
		}
	}
	if rd.from != "" {
		if err := pingRedis(ctx, rd.url); err != nil {
			return nil, connectError("Redis", rd, err)
		}
	}

	var names, absent []string // the servers to start, where none listens
	if addr := hostPort(db.url); db.from == "" && !listens(addr) {
		names, absent = append(names, "postgres"), append(absent, addr)
	}
	if addr := hostPort(rd.url); rd.from == "" && !listens(addr) {
		names, absent = append(names, "redis"), append(absent, addr)
	}
	if len(names) == 0 {
		return s, nil
	}
	if err := s.start(ctx, names); err != nil {
		return nil, errors.Join(err, s.stop())
	}
	var started []string
	if slices.Contains(names, "postgres") {
		started = append(started, "PostgreSQL on "+hostPort(s.databaseURL))
	}
	if slices.Contains(names, "redis") {
		started = append(started, "Redis on "+hostPort(s.redisURL))
	}
	fmt.Printf("nothing answers at %s: started throw-away %s (files in %s, removed on exit)\n",
		strings.Join(absent, " and "), strings.Join(started, " and "), s.dir)
	return s, nil
}

// start runs `scripts/throwaway.sh start` for the named servers ("postgres",
// "redis") in a new temporary directory and takes their URLs. Its notes
// (packages being installed) pass through to stderr; its error line becomes
// the error.
func (s *servers) start(ctx context.Context, names []string) error {
	var err error
	if s.script, err = findScript(); err != nil {
		return err
	}
	if s.dir, err = os.MkdirTemp("", "pgrelay-quickstart-"); err != nil {
		return fmt.Errorf("create a directory for throw-away servers: %w", err)
	}
	cmd := exec.CommandContext(ctx, "bash", append([]string{s.script, "start", s.dir}, names...)...)
	var out bytes.Buffer
	notes := &scriptStderr{}
	cmd.Stdout, cmd.Stderr = &out, notes
	// Cancelled (Ctrl-C, or SIGTERM to the quickstart), the script gets
	// SIGTERM and stops what it has started before it exits; at a terminal,
	// Ctrl-C reaches it directly too.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("start throw-away servers: %w", ctx.Err())
		}
		if notes.last != "" {
			return fmt.Errorf("start throw-away servers: %s", notes.last)
		}
		return fmt.Errorf("start throw-away servers (%s start): %w", script, err)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "PG_DATABASE_URL="); ok {
			s.databaseURL = v
		} else if v, ok := strings.CutPrefix(line, "REDIS_URL="); ok {
			s.redisURL = v
		}
	}
	return nil
}

// stop removes the throw-away servers, if any were started. It does not
// depend on the tour's context: it must run after Ctrl-C too.
func (s *servers) stop() error {
	if s.dir == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The script ignores Ctrl-C while it stops the servers.
	cmd := exec.CommandContext(ctx, "bash", s.script, "stop", s.dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("remove the throw-away servers in %s: %w", s.dir, err)
	}
	return nil
}

// scriptStderr passes the script's lines through to stderr, except its
// error line ("throwaway.sh: …"), which it keeps in last so that the
// quickstart reports it once, in its own line.
type scriptStderr struct {
	partial []byte
	last    string
}

// Write passes on or keeps each complete line of p.
func (w *scriptStderr) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		line, rest, ok := bytes.Cut(w.partial, []byte("\n"))
		if !ok {
			return len(p), nil
		}
		w.partial = rest
		if msg, isErr := strings.CutPrefix(string(line), filepath.Base(script)+": "); isErr {
			w.last = msg
		} else {
			fmt.Fprintf(os.Stderr, "%s\n", line)
		}
	}
}

// findScript returns the path of scripts/throwaway.sh: in the checkout this
// program was built from, or else below the working directory.
func findScript() (string, error) {
	var tried []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		tried = append(tried, filepath.Join(filepath.Dir(file), "..", "..", script))
	}
	tried = append(tried, script)
	for _, p := range tried {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("nothing answers at the default addresses, and %s, which starts throw-away servers, is not at %s: run the quickstart from the repository root, or set PG_DATABASE_URL and REDIS_URL",
		script, strings.Join(tried, " or "))
}

// pingPostgres connects to the PostgreSQL at rawURL and closes the
// connection again.
func pingPostgres(ctx context.Context, rawURL string) error {
	ctx, cancel := context.WithTimeout(ctx, checkFor)
	defer cancel()
	conn, err := pgx.Connect(ctx, rawURL)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// connectError says that the server set by s could not be reached: briefly
// when nothing listens there.
func connectError(server string, s setting, err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s at %s=%s does not answer: connection refused", server, s.from, relay.RedactURL(s.url))
	}
	return fmt.Errorf("connect to %s at %s=%s: %w", server, s.from, relay.RedactURL(s.url), err)
}

// pingRedis sends PING to the Redis at rawURL.
func pingRedis(ctx context.Context, rawURL string) error {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return err
	}
	// Dialled here first: go-redis would log every one of its retries.
	conn, err := net.DialTimeout(opts.Network, opts.Addr, checkFor)
	if err != nil {
		return err
	}
	conn.Close()
	ctx, cancel := context.WithTimeout(ctx, checkFor)
	defer cancel()
	opts.MaxRetries = -1 // no retries
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	return rdb.Ping(ctx).Err()
}

// listens reports whether something accepts TCP connections at addr.
func listens(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, checkFor)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// hostPort returns the host:port of a URL of ours.
func hostPort(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	return u.Host
}

// lookup returns the value of the first of the environment variables that
// is set, or def.
func lookup(def string, names ...string) setting {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return setting{url: v, from: n}
		}
	}
	return setting{url: def}
}
