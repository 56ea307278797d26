package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pgrelay/pgrelay/relay"
)

// newClient returns a client of the server or cluster cfg names, with
// room in its pool for conns connections blocked in reads at once.
//
// go-redis's own retries are off: a command that failed after it was sent
// is not sent again behind the caller's back. XREADGROUP ">" must not be:
// the first one may have delivered entries whose reply was lost, and a
// silent second one would deliver the entries after them, out of order.
// Every caller retries by itself instead, knowing what it read.
func newClient(cfg *config, conns int) (redis.UniversalClient, error) {
	redacted := relay.RedactURL(cfg.redisURL)
	poolSize := max(10*runtime.GOMAXPROCS(0), conns+4)
	if cfg.cluster {
		opts, err := redis.ParseClusterURL(cfg.redisURL)
		if err != nil {
			return nil, fmt.Errorf("invalid --redis-url %s for a cluster: %w", redacted, err)
		}
		opts.MaxRetries = -1
		opts.MaxRedirects = -1 // also retries on network errors; a MOVED is retried by the caller
		opts.PoolSize = max(opts.PoolSize, poolSize)
		opts.ClientName = orDefault(opts.ClientName, "pgrelay-subscriber")
		return redis.NewClusterClient(opts), nil
	}
	opts, err := redis.ParseURL(cfg.redisURL)
	if err != nil {
		hint := ""
		if strings.Contains(cfg.redisURL, "addr=") {
			hint = " (more seed addresses need --cluster)"
		}
		return nil, fmt.Errorf("invalid --redis-url %s: %w%s", redacted, err, hint)
	}
	opts.MaxRetries = -1
	opts.PoolSize = max(opts.PoolSize, poolSize)
	opts.ClientName = orDefault(opts.ClientName, "pgrelay-subscriber")
	return redis.NewClient(opts), nil
}

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// transient reports whether err, from Redis, may go away by itself: a
// network error, or a server that is loading, failing over or resharding.
// Other error replies (a wrong type, a missing permission) are the user's to
// fix, and so are failures to write to stdout.
func transient(err error) bool {
	var out *outputError
	if errors.As(err, &out) || errors.Is(err, redis.ErrClosed) {
		return false
	}
	var reply redis.Error
	if !errors.As(err, &reply) {
		return true
	}
	for _, code := range []string{"LOADING", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY", "MOVED", "ASK", "NOREPLICAS", "ERR max number of clients"} {
		if replyIs(err, code) {
			return true
		}
	}
	return false
}

// replyIs reports whether err is, or wraps, an error reply from Redis
// starting with code ("NOGROUP", "ERR max number…").
func replyIs(err error, code string) bool {
	var reply redis.Error
	if !errors.As(err, &reply) {
		return false
	}
	msg := reply.Error()
	return strings.HasPrefix(msg, code) && (len(msg) == len(code) || msg[len(code)] == ' ')
}

// health tells the user, on stderr, when Redis stops answering and when it
// answers again: one line each per outage, however many readers notice it.
type health struct {
	mu   sync.Mutex
	out  io.Writer
	down map[string]bool // the readers whose last attempt failed
	// recovered ends the line written when every reader works again.
	recovered string
}

// failed records that reader's last attempt failed with err, and writes
// the outage line if it is the first reader to fail.
func (h *health) failed(reader string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.down) == 0 {
		fmt.Fprintf(h.out, "lost connection to redis (%s); retrying\n", strings.Join(strings.Fields(err.Error()), " "))
	}
	if h.down == nil {
		h.down = map[string]bool{}
	}
	h.down[reader] = true
}

// ok records that reader's last attempt worked, and writes the recovery
// line if it was the last reader failing.
func (h *health) ok(reader string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.down[reader] {
		return
	}
	delete(h.down, reader)
	if len(h.down) == 0 {
		fmt.Fprintln(h.out, "reconnected to redis"+h.recovered)
	}
}

// Backoff between attempts while Redis is away.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// backoff is the growing wait between one reader's failed attempts.
type backoff struct{ next time.Duration }

// wait waits before the next attempt, longer each time up to maxBackoff,
// and returns ctx's error if it ends first.
func (b *backoff) wait(ctx context.Context) error {
	b.next = min(max(2*b.next, minBackoff), maxBackoff)
	t := time.NewTimer(b.next)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// reset makes the next wait the shortest again, after a success.
func (b *backoff) reset() { b.next = 0 }

// session is what the readers of one run share: the client, the printer,
// the health reporter, and the lock that keeps the client open while an
// entry is between being printed and acknowledged.
type session struct {
	rdb    redis.UniversalClient
	out    *printer
	errOut io.Writer
	health *health
	// busy is held for reading around print-and-acknowledge, and for
	// writing by closeWhenDone, so that stopping (a signal, --count) never
	// cuts in between the two.
	busy sync.RWMutex
	// halted is set when the run's context has ended, before any
	// connection is closed because of it: a reader whose read then fails
	// knows that the failure is the end, not Redis going away, even before
	// its own context reports the end (context.AfterFunc's function may
	// run before the derived contexts are cancelled).
	halted atomic.Bool
}

// over reports whether the run is over: ctx ended, or the connections are
// being closed because it is ending.
func (s *session) over(ctx context.Context) bool {
	return s.halted.Load() || ctx.Err() != nil
}

// whenOver calls closeFn once the run's context ctx ends, after marking the
// run halted.
func (s *session) whenOver(ctx context.Context, closeFn func()) (stop func() bool) {
	return context.AfterFunc(ctx, func() {
		s.halted.Store(true)
		closeFn()
	})
}

// closeWhenDone closes the client when ctx ends, which ends the blocked
// reads, but not during a print-and-acknowledge. Call the returned function
// to wait until that has happened.
func (s *session) closeWhenDone(ctx context.Context) (wait func()) {
	closed := make(chan struct{})
	s.whenOver(ctx, func() {
		defer close(closed)
		s.busy.Lock()
		defer s.busy.Unlock()
		_ = s.rdb.Close()
	})
	return func() { <-closed }
}

// retry handles a failed attempt of reader: it returns err itself when
// retrying cannot help, nil with stop when ctx ended (the run is over), and
// nil without stop after the backoff, for the next attempt.
func (s *session) retry(ctx context.Context, reader string, b *backoff, err error) (stop bool, fatal error) {
	if s.over(ctx) {
		return true, nil
	}
	if !transient(err) {
		return true, err
	}
	s.health.failed(reader, err)
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		// A failed node may have been replaced: look again where each
		// slot lives, since go-redis does not while its retries are off.
		cc.ReloadState(ctx)
	}
	if b.wait(ctx) != nil {
		return true, nil
	}
	return false, nil
}

// stopped returns err, or nil when the run is over: a signal during the
// setup is no failure.
func (s *session) stopped(ctx context.Context, err error) error {
	if s.over(ctx) {
		return nil
	}
	return err
}

// runAll runs each of fns in its own goroutine, with a context that ends
// when ctx does or when one of them fails, waits for all of them, and
// returns the first error.
func runAll(ctx context.Context, fns []func(context.Context) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Go(func() {
			if err := fn(ctx); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
