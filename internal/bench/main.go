// Command bench is pgrelay's benchmark suite. It measures, against real
// PostgreSQL and Redis servers, what CDC costs writers, with and without a
// relay delivering meanwhile, how fast, how promptly and in how little
// memory the relay delivers, in the suite's process and as a process of its
// own, and what it costs when idle, and writes the results as a Markdown
// report:
//
//	go run ./internal/bench -out BENCHMARKS.md      # the full suite, under 12 minutes
//	go run ./internal/bench -quick -out /tmp/b.md   # a smoke run of about two minutes
//	go run ./internal/bench -only drain,latency     # a subset
//
// The servers are TEST_DATABASE_URL and TEST_REDIS_URL, as for the tests.
// The suite works in a database of its own, pgrelay_bench_<random>, dropped
// at the end (also on error and Ctrl-C), and in a schema whose name is unique
// to the run, so that its Redis channel cannot collide with anyone else's.
// The TPC-B write comparison has a database of its own besides,
// pgrelay_bench_<random>_tpcb, dropped likewise. Every process it starts
// (the relay binary, pgbench, subscriber and stream consumer processes,
// which are this binary run with -subscriber-process or
// -stream-consumer-process) is stopped when its measurement ends, also on
// error and Ctrl-C, and killed by the kernel should the suite itself be.
// The streams a measurement appends to are deleted when it ends.
//
// Timings are never assertions: every figure is reported with its target
// and whether it was met. The exit status is non-zero only when a
// measurement could not be completed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Defaults used when the environment names no servers, as in the tests.
const (
	defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	defaultRedisURL    = "redis://127.0.0.1:6379/0"
)

// config holds the sizes, durations and round counts of one run.
type config struct {
	quick bool

	clients int // concurrent writers wherever several are used

	bulkRounds     int
	bulkStatements int

	concRounds   int
	concDuration time.Duration

	updRounds int
	updRows   int64

	// filterRounds is how many rounds the row-filter comparison runs, each
	// table for concDuration (whole seconds) per round.
	filterRounds int

	drainRounds int
	drainEvents int64
	naiveEvents int64
	// tpcbTransactions is how many TPC-B transactions each client writes
	// for the drain-tpcb backlog.
	tpcbTransactions int

	// The tpcb write comparison: pgbench's TPC-B at tpcbScale, one run
	// of tpcbDuration per side and round.
	tpcbScale    int
	tpcbRounds   int
	tpcbDuration time.Duration

	slowConns, fastConns int
	latRounds            int
	latDuration          time.Duration
	fastRounds           int
	fastDuration         time.Duration

	memSizes  []int64
	memRounds int

	sustainDuration time.Duration
	sampleEvery     time.Duration

	largeTxRows   int64
	largeTxRounds int

	// idleDuration is how long the idle relay is watched, in intervals of
	// idleSampleEvery.
	idleDuration    time.Duration
	idleSampleEvery time.Duration
}

// fullConfig is sized to finish the whole suite in under 12 minutes on two
// cores.
func fullConfig() config {
	return config{
		clients:          8,
		bulkRounds:       5,
		bulkStatements:   50,
		concRounds:       3,
		concDuration:     3 * time.Second,
		updRounds:        3,
		updRows:          50_000,
		filterRounds:     5,
		drainRounds:      3,
		drainEvents:      200_000,
		naiveEvents:      20_000,
		tpcbTransactions: 1_000,
		tpcbScale:        10,
		tpcbRounds:       3,
		tpcbDuration:     15 * time.Second,
		slowConns:        4,
		fastConns:        8,
		latRounds:        3,
		latDuration:      10 * time.Second,
		fastRounds:       3,
		fastDuration:     10 * time.Second / 3,
		memSizes:         []int64{100_000, 1_000_000},
		memRounds:        3,

		sustainDuration: 60 * time.Second,
		sampleEvery:     5 * time.Second,
		largeTxRows:     100_000,
		largeTxRounds:   3,
		// One poll interval of the relay's (30 s by default) and six
		// watchdog intervals (5 s).
		idleDuration:    30 * time.Second,
		idleSampleEvery: 5 * time.Second,
	}
}

// quickConfig is a smoke run of about two minutes: every code path, small
// sizes, few rounds.
func quickConfig() config {
	c := fullConfig()
	c.quick = true
	c.bulkRounds, c.bulkStatements = 2, 20
	c.concRounds, c.concDuration = 2, time.Second
	c.updRounds, c.updRows = 2, 10_000
	c.filterRounds = 2
	c.drainRounds, c.drainEvents, c.naiveEvents = 2, 50_000, 5_000
	c.tpcbTransactions = 300
	c.tpcbRounds, c.tpcbDuration = 2, 4*time.Second
	c.latRounds, c.latDuration = 2, 5*time.Second
	c.fastRounds, c.fastDuration = 2, 2*time.Second
	c.memSizes, c.memRounds = []int64{20_000, 100_000}, 1
	c.sustainDuration = 15 * time.Second
	c.largeTxRows, c.largeTxRounds = 20_000, 2
	c.idleDuration, c.idleSampleEvery = 6*time.Second, 2*time.Second
	return c
}

// benchmark is one measurement of the suite.
type benchmark struct {
	key   string
	title string
	run   func(ctx context.Context, e *env, sec *Section) error
	// needsBinary marks the measurements that run the relay binary.
	needsBinary bool
}

var suite = []benchmark{
	{key: "bulk-insert", title: "Write overhead: bulk INSERT", run: runBulkInsert, needsBinary: true},
	{key: "concurrent-insert", title: "Write overhead: concurrent single-row INSERT", run: runConcurrentInsert, needsBinary: true},
	{key: "update-delete", title: "UPDATE and DELETE overhead", run: runUpdateDelete, needsBinary: true},
	{key: "tpcb", title: "Write overhead: pgbench TPC-B", run: runTPCB, needsBinary: true},
	{key: "filter", title: "Write overhead of a row filter that rejects every row", run: runFilter},
	{key: "drain", title: "Drain throughput, in-process relay", run: runDrain},
	{key: "drain-external", title: "Drain throughput, relay and subscriber in processes of their own", run: runDrainExternal, needsBinary: true},
	{key: "drain-stream", title: "Drain throughput by Redis mode (pub/sub, stream, both), relay and readers in processes of their own", run: runDrainStream, needsBinary: true},
	{key: "drain-tpcb", title: "Drain throughput, TPC-B backlog, in-process relay", run: runDrainTPCB},
	{key: "latency", title: "End-to-end latency, in-process relay", run: runLatency},
	{key: "latency-external", title: "End-to-end latency, relay, writers and subscriber in processes of their own", run: runLatencyExternal, needsBinary: true},
	{key: "memory", title: "Relay memory", run: runMemory, needsBinary: true},
	{key: "sustained", title: "Sustained load", run: runSustained},
	{key: "large-tx", title: "Large transaction", run: runLargeTx, needsBinary: true},
	{key: "idle", title: "Idle relay", run: runIdle, needsBinary: true},
}

func main() {
	os.Exit(run())
}

func run() int {
	out := flag.String("out", "BENCHMARKS.md", "write the Markdown report to `FILE`")
	quick := flag.Bool("quick", false, "fewer rounds and smaller sizes: a smoke run of about two minutes")
	only := flag.String("only", "", "run only these measurements, comma-separated: "+keys())
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run, in-process relays included, to `FILE`")
	subChannel := flag.String(subscriberProcessFlag, "", "internal, used by the suite itself: be a subscriber process on `CHANNEL` (see subprocess.go)")
	subRecord := flag.Bool(subscriberRecordFlag, false, "internal: with -"+subscriberProcessFlag+", record latencies")
	consumeStream := flag.String(streamConsumerProcessFlag, "", "internal, used by the suite itself: be a stream consumer process on `STREAM` (see subprocess.go)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected argument %q\n", flag.Arg(0))
		return 2
	}
	if *subChannel != "" {
		return runSubscriberProcess(*subChannel, *subRecord)
	}
	if *consumeStream != "" {
		return runStreamConsumerProcess(*consumeStream)
	}
	selected, err := selectBenchmarks(*only)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 2
	}
	cfg := fullConfig()
	if *quick {
		cfg = quickConfig()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first Ctrl-C the run winds down and cleans up; a
		// second one kills it the usual way.
		<-ctx.Done()
		stop()
	}()

	e, cleanup, err := newEnv(ctx, cfg, selected)
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	ticksBefore := readCPUTicks()
	header := e.describe(ctx)
	if *cpuProfile != "" {
		stopProfile, err := startProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 1
		}
		defer stopProfile()
	}

	var sections []*Section
	failed := false
	for _, b := range selected {
		if ctx.Err() != nil {
			break
		}
		sec := &Section{Key: b.key, Title: b.title}
		e.progress("%s: start", b.key)
		if err := b.run(ctx, e, sec); err != nil {
			sec.Err = err
			failed = true
			e.progress("%s: FAILED: %v", b.key, err)
		}
		sections = append(sections, sec)
	}
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "bench: interrupted; no report written")
		return 130
	}

	header.Duration = time.Since(e.started)
	header.LoadAfter = loadAverage()
	header.ProbeAfter = cpuProbe()
	header.Steal = stealShare(ticksBefore, readCPUTicks())
	header.Command = "go run ./internal/bench " + strings.Join(os.Args[1:], " ")
	if err := writeFile(*out, header, sections); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	e.progress("wrote %s (total %s)", *out, header.Duration.Round(time.Second))
	if failed {
		return 1
	}
	return 0
}

// startProfile starts CPU profiling into path and returns the function that
// stops it and closes the file.
func startProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

func keys() string {
	ks := make([]string, len(suite))
	for i, b := range suite {
		ks[i] = b.key
	}
	return strings.Join(ks, ",")
}

// selectBenchmarks parses -only; empty selects the whole suite, always in
// the suite's own order.
func selectBenchmarks(only string) ([]benchmark, error) {
	if only == "" {
		return suite, nil
	}
	want := map[string]bool{}
	for _, k := range strings.Split(only, ",") {
		if k = strings.TrimSpace(k); k != "" {
			want[k] = true
		}
	}
	var sel []benchmark
	for _, b := range suite {
		if want[b.key] {
			sel = append(sel, b)
			delete(want, b.key)
		}
	}
	for k := range want {
		return nil, fmt.Errorf("unknown measurement %q (known: %s)", k, keys())
	}
	if len(sel) == 0 {
		return nil, errors.New("-only selects nothing")
	}
	return sel, nil
}

// newEnv connects, creates the run's database, schema and tables, and builds
// the relay binary if a selected measurement needs it. cleanup, when not
// nil, must be called even if err is not nil: it drops whatever was created.
func newEnv(ctx context.Context, cfg config, selected []benchmark) (e *env, cleanup func(), err error) {
	suffix := randomHex(6)
	e = &env{
		cfg:      cfg,
		started:  time.Now(),
		adminURL: envOr("TEST_DATABASE_URL", defaultDatabaseURL),
		redisURL: envOr("TEST_REDIS_URL", defaultRedisURL),
		dbName:   databasePrefix + suffix,
		schema:   "bench_" + suffix,
		relayLg: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).
			With("in", "in-process relay"),
	}
	var undo []func()
	cleanup = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	if e.redis, err = redis.ParseURL(e.redisURL); err != nil {
		return nil, cleanup, fmt.Errorf("TEST_REDIS_URL: %w", err)
	}
	rdb := e.newRedis()
	err = rdb.Ping(ctx).Err()
	_ = rdb.Close()
	if err != nil {
		return nil, cleanup, fmt.Errorf("connect to Redis (set TEST_REDIS_URL): %w", err)
	}
	if e.dbURL, err = withDatabase(e.adminURL, e.dbName); err != nil {
		return nil, cleanup, err
	}

	for _, b := range selected {
		if b.needsBinary {
			dir, err := os.MkdirTemp("", "pgrelay-bench-")
			if err != nil {
				return nil, cleanup, err
			}
			undo = append(undo, func() { _ = os.RemoveAll(dir) })
			e.progress("building the relay binary")
			// A build failure fails only the measurements that need
			// the binary; the others still run.
			e.relayBin, e.relayBinErr = buildRelay(ctx, dir)
			if e.relayBinErr != nil {
				e.progress("%v", e.relayBinErr)
			}
			break
		}
	}

	e.warnLeftovers(ctx)
	drop, err := e.createDatabase(ctx, e.dbName)
	if err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, drop)
	e.progress("created database %s", e.dbName)
	if e.pool, err = pgxpool.New(ctx, e.dbURL); err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, e.pool.Close)
	if err := e.setup(ctx); err != nil {
		return nil, cleanup, fmt.Errorf("set up: %w", err)
	}
	return e, cleanup, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func writeFile(path string, h Header, sections []*Section) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := writeReport(f, h, sections); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
