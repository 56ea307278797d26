package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	redissink "github.com/pgrelay/pgrelay/handlers/redis"
	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/route"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// databasePrefix starts the name of every database the suite creates, so
// that one left behind by a killed run can be recognised and dropped.
const databasePrefix = "pgrelay_bench_"

// rowsPerStatement is the size of every bulk statement: the same 1,000 rows
// as the relay's default batch.
const rowsPerStatement = 1000

// env is one run's servers, database and tables.
type env struct {
	cfg      config
	started  time.Time
	adminURL string
	dbURL    string
	redisURL string
	redis    *redis.Options
	dbName   string
	// schema holds the tables plain and cdc. It is unique to the run so
	// that the Redis channel, which is named after schema and table, does
	// not collide with another run or test on the same Redis server.
	schema  string
	pool    *pgxpool.Pool
	relayLg *slog.Logger

	// relayBin is the relay binary for the subprocess measurements, or
	// relayBinErr why it could not be built.
	relayBin    string
	relayBinErr error

	// nextID hands out primary keys for writes that do not reset the
	// tables first (latency, sustained load), so that they never collide.
	nextID atomic.Int64
	// probes counts the probe events written to see a relay deliver
	// (liverelay.go); their rows take negative ids, which nothing else uses.
	probes atomic.Int64
}

// progress prints one line on stderr, stamped with the time since the start.
func (e *env) progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(e.started).Seconds(), fmt.Sprintf(format, args...))
}

// table returns the quoted, schema-qualified name of table name.
func (e *env) table(name string) string {
	return pgx.Identifier{e.schema, name}.Sanitize()
}

// channel is the Redis channel the relay publishes the cdc table's events on.
func (e *env) channel() string {
	return route.Channel(e.schema, "cdc")
}

// randomHex returns n random bytes as hex, for names unique to the run.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// withDatabase returns rawURL with its database name replaced.
func withDatabase(rawURL, name string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("database URL must be a postgres:// URL: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// createDatabase creates database name and returns a function that drops
// it. The drop uses its own context: it must also run after Ctrl-C has
// cancelled everything else.
func (e *env) createDatabase(ctx context.Context, name string) (drop func(), err error) {
	admin, err := pgx.Connect(ctx, e.adminURL)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL (set TEST_DATABASE_URL): %w", err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, e.adminURL)
		if err == nil {
			defer c.Close(ctx)
			_, err = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: could not drop database %s, drop it by hand: %v\n", name, err)
			return
		}
		e.progress("dropped database %s", name)
	}, nil
}

// warnLeftovers lists benchmark databases nobody is connected to, which a
// killed run may have left behind. It only warns: a database that looks
// unused may be one that another run has just created, so dropping it is
// left to a person.
func (e *env) warnLeftovers(ctx context.Context) {
	admin, err := pgx.Connect(ctx, e.adminURL)
	if err != nil {
		return
	}
	defer admin.Close(context.WithoutCancel(ctx))
	rows, err := admin.Query(ctx, `
		SELECT d.datname FROM pg_database d
		WHERE starts_with(d.datname, $1)
		  AND NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.datid = d.oid)
		ORDER BY 1`, databasePrefix)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(names) == 0 {
		return
	}
	fmt.Fprintf(os.Stderr, "bench: warning: databases probably left by killed runs (drop them with DROP DATABASE … WITH (FORCE)): %s\n",
		strings.Join(names, ", "))
}

// setup installs pgrelay's schema and the two tables: plain without CDC and
// cdc with it, otherwise identical.
func (e *env) setup(ctx context.Context) error {
	if err := sqlkit.Migrate(ctx, e.pool); err != nil {
		return err
	}
	ddl := []string{"CREATE SCHEMA " + pgx.Identifier{e.schema}.Sanitize()}
	for _, t := range []string{"plain", "cdc"} {
		ddl = append(ddl, e.createTableSQL(t))
	}
	for _, q := range ddl {
		if _, err := e.pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", strings.Fields(q)[0:3], err)
		}
	}
	_, err := sqlkit.EnsureCDCFor(ctx, e.pool, sqlkit.Table{Schema: e.schema, Name: "cdc"})
	return err
}

// createTableSQL creates table name in the run's schema with the shape of
// every table the suite writes single rows and bulk statements to.
func (e *env) createTableSQL(name string) string {
	return "CREATE TABLE " + e.table(name) + ` (
		id      bigint PRIMARY KEY,
		name    text,
		email   text,
		score   int,
		created timestamptz DEFAULT now())`
}

// reset empties both tables, the outbox and the relays' positions, so that
// every round starts from the same state. The tables go first: truncating
// cdc records a truncate event, which the outbox truncation then removes. A
// checkpoint follows so that the previous round's dirty pages are not
// flushed in the middle of the next one.
func (e *env) reset(ctx context.Context) error {
	for _, q := range []string{
		"TRUNCATE " + e.table("plain") + ", " + e.table("cdc"),
		"TRUNCATE cdc.outbox",
		"DELETE FROM cdc.relay_cursor",
		"CHECKPOINT",
	} {
		if _, err := e.pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("reset: %s: %w", q, err)
		}
	}
	return nil
}

// clientApp is the application_name of the suite's client connections, by
// which the wait-event sampler finds them.
const clientApp = "pgrelay-bench client"

// connect opens a connection of its own, as an application client would.
func (e *env) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(e.dbURL)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = clientApp
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return c, nil
}

// connectN opens n connections; close them with closeAll.
func (e *env) connectN(ctx context.Context, n int) ([]*pgx.Conn, error) {
	conns := make([]*pgx.Conn, 0, n)
	for range n {
		c, err := e.connect(ctx)
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(conns []*pgx.Conn) {
	for _, c := range conns {
		_ = c.Close(context.Background())
	}
}

// insertSeriesSQL inserts rows first..last ($1..$2) in one statement, the
// text columns derived from the id so that every row differs.
func (e *env) insertSeriesSQL(table string) string {
	return "INSERT INTO " + e.table(table) + ` (id, name, email, score)
		SELECT g, 'name ' || g, 'user' || g || '@example.com', (g % 1000)::int
		FROM generate_series($1::bigint, $2::bigint) AS g`
}

// insertOneSQL inserts row $1 with the same values insertSeriesSQL gives it.
func (e *env) insertOneSQL(table string) string {
	return "INSERT INTO " + e.table(table) + ` (id, name, email, score)
		VALUES ($1, 'name ' || $1::bigint, 'user' || $1::bigint || '@example.com', ($1::bigint % 1000)::int)`
}

// insertRange inserts rows first..first+n-1 into table in autocommitted
// statements of per rows, and returns how long that took.
func (e *env) insertRange(ctx context.Context, conn *pgx.Conn, table string, first, n, per int64) (time.Duration, error) {
	q := e.insertSeriesSQL(table)
	start := time.Now()
	for lo := first; lo < first+n; lo += per {
		hi := min(lo+per, first+n) - 1
		if _, err := conn.Exec(ctx, q, lo, hi); err != nil {
			return 0, fmt.Errorf("insert into %s: %w", table, err)
		}
	}
	return time.Since(start), nil
}

// writeBacklog commits n events into the cdc table in 1,000-row
// transactions, with no relay running, and returns the first id used.
func (e *env) writeBacklog(ctx context.Context, n int64) (int64, error) {
	conn, err := e.connect(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	first := e.nextID.Add(n) - n + 1
	d, err := e.insertRange(ctx, conn, "cdc", first, n, rowsPerStatement)
	if err != nil {
		return 0, err
	}
	e.progress("  wrote a backlog of %s events in %.1fs (%s events/s)",
		thousands(n), d.Seconds(), PerSecond.format(rate(n, d)))
	return first, nil
}

// newRedis returns a client of its own on the benchmark's Redis server.
func (e *env) newRedis() *redis.Client {
	return redis.NewClient(e.redis)
}

// timedRedis is pgrelay's Redis handler with a clock on it: it records when
// the relay finished publishing each batch, so that the report can tell the
// relay's own publishing rate from what the subscriber managed to read.
type timedRedis struct {
	*redissink.Handler
	published atomic.Int64
	lastAt    atomic.Int64 // UnixNano of the end of the last batch
}

// OnEvents publishes through the wrapped handler, then counts.
func (h *timedRedis) OnEvents(ctx context.Context, events []relay.Event) error {
	if err := h.Handler.OnEvents(ctx, events); err != nil {
		return err
	}
	h.published.Add(int64(len(events)))
	h.lastAt.Store(time.Now().UnixNano())
	return nil
}

// inProcess is a relay running inside the benchmark, publishing to Redis on
// a client of its own.
type inProcess struct {
	r       *relay.Relay
	rdb     *redis.Client
	handler *timedRedis
}

// newRelay prepares an in-process relay with the default configuration,
// ready to Start.
func (e *env) newRelay() (*inProcess, error) {
	rdb := e.newRedis()
	sink, err := redissink.New(redissink.Config{Client: rdb})
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	h := &timedRedis{Handler: sink}
	r, err := relay.New(relay.Config{DatabaseURL: e.dbURL, Logger: e.relayLg}, h)
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	return &inProcess{r: r, rdb: rdb, handler: h}, nil
}

// close stops the relay and its Redis client.
func (p *inProcess) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_ = p.r.Close(ctx)
	_ = p.rdb.Close()
}

// moduleRoot finds the directory of pgrelay's go.mod, where the relay binary
// is built from.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run the benchmarks from inside the pgrelay module")
	}
	return filepath.Dir(mod), nil
}

// buildRelay builds cmd/relay into dir, as the memory measurements run the
// real binary rather than a relay inside this (much larger) process.
func buildRelay(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "relay")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/relay")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/relay: %w: %s", err, oneLine(string(out)))
	}
	return bin, nil
}

// relayProc is `relay run` running as a subprocess.
type relayProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// startRelayProcess starts `relay run` on database dbURL (the run's, or
// another the suite created) and the run's Redis, with runFlags, if any,
// after `run`. RELAY_* and LOG_* variables are left out of its environment
// so that nothing but the defaults and the flags below configures it.
func (e *env) startRelayProcess(dbURL string, runFlags ...string) (*relayProc, error) {
	if e.relayBinErr != nil {
		return nil, e.relayBinErr
	}
	cmd := exec.Command(e.relayBin, append([]string{
		"--database-url", dbURL,
		"--redis-url", e.redisURL,
		"--log-level", "warn",
		"run"}, runFlags...)...)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "RELAY_") || strings.HasPrefix(name, "LOG_") {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	// Should the benchmark itself be killed outright, the kernel kills the
	// relay too instead of leaving it running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start relay: %w", err)
	}
	p := &relayProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// running returns an error if the relay has exited.
func (p *relayProc) running() error {
	select {
	case <-p.exited:
		return errors.New("the relay exited early: " + p.cmd.ProcessState.String())
	default:
		return nil
	}
}

// peakRSS returns the process's peak resident set size (VmHWM) in MiB.
func (p *relayProc) peakRSS() (float64, error) {
	if err := p.running(); err != nil {
		return 0, err
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			fields := strings.Fields(rest) // "12345 kB"
			if len(fields) == 2 && fields[1] == "kB" {
				kb, err := strconv.ParseFloat(fields[0], 64)
				if err != nil {
					return 0, err
				}
				return kb / 1024, nil
			}
		}
	}
	return 0, errors.New("no VmHWM in /proc/<pid>/status")
}

// stop sends SIGTERM, the relay's normal shutdown, and kills it if it has
// not exited within a few seconds.
func (p *relayProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		fmt.Fprintf(os.Stderr, "bench: relay %d ignored SIGTERM for 10s; killing it\n", p.cmd.Process.Pid)
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}
