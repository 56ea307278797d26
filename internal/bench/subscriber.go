package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// subscriber receives the events of one Redis channel over a connection of
// its own, as an application would, counts them and, while recording, the
// latency of each: its arrival time minus the event's "timestamp" field.
//
// One goroutine reads with ReceiveMessage in a tight loop, rather than
// through PubSub.Channel, to save a goroutine hop and a channel send per
// message: at drain rates the subscriber must not be what is measured.
type subscriber struct {
	*counter
	client    *redis.Client
	ps        *redis.PubSub
	recording atomic.Bool
	closing   atomic.Bool

	// samples and badStamps are guarded by counter.mu.
	samples   []time.Duration
	badStamps int
}

// counter counts the messages a reader (a subscriber, a stream consumer)
// has received and wakes those waiting for a count.
type counter struct {
	// what names the reader in errors.
	what  string
	count atomic.Int64
	// lastAt is the arrival time of the latest message, in Unix
	// nanoseconds, stored before count counts it.
	lastAt atomic.Int64
	// watch is the smallest count a waiter is waiting for (MaxInt64 when
	// none), so that the reader takes the lock only when it may have to
	// wake someone.
	watch atomic.Int64
	// exited is closed when the reader stops, with err set unless it was
	// closed.
	exited chan struct{}

	mu      sync.Mutex
	waiters []waiter
	err     error
}

func newCounter(what string) *counter {
	c := &counter{what: what, exited: make(chan struct{})}
	c.watch.Store(math.MaxInt64)
	return c
}

// arrived counts k messages that arrived at now, together.
func (c *counter) arrived(k int64, now time.Time) {
	c.lastAt.Store(now.UnixNano())
	n := c.count.Add(k)
	if n >= c.watch.Load() {
		c.wake(n, now)
	}
}

// stopped records why the reader stopped; nil when it was closed.
func (c *counter) stopped(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

// receiver is what counts delivered events: the subscriber in this process
// or one in a process of its own.
type receiver interface {
	// wait returns when n messages in all have arrived, with the arrival
	// time of the n-th, or an error after timeout.
	wait(ctx context.Context, n int64, timeout time.Duration) (time.Time, error)
	// close unsubscribes and, for a process, stops it.
	close()
}

type waiter struct {
	n  int64
	ch chan time.Time
}

// timestampField precedes the event's change time in pgrelay's JSON.
const timestampField = `"timestamp":"`

// subscribe connects, subscribes to channel (a pattern when it holds a *)
// and waits for Redis to confirm
// the subscription, so that nothing published afterwards can be missed.
func (e *env) subscribe(ctx context.Context, channel string) (*subscriber, error) {
	s := &subscriber{counter: newCounter("subscriber"), client: e.newRedis()}
	kind := "subscribe"
	if strings.Contains(channel, "*") {
		kind, s.ps = "psubscribe", s.client.PSubscribe(ctx, channel)
	} else {
		s.ps = s.client.Subscribe(ctx, channel)
	}
	msg, err := s.ps.Receive(ctx)
	if err == nil {
		if sub, ok := msg.(*redis.Subscription); !ok || sub.Kind != kind {
			err = fmt.Errorf("unexpected reply to SUBSCRIBE: %v", msg)
		}
	}
	if err != nil {
		_ = s.ps.Close()
		_ = s.client.Close()
		return nil, fmt.Errorf("subscribe to %s: %w", channel, err)
	}
	go s.read()
	return s, nil
}

func (s *subscriber) read() {
	defer close(s.exited)
	ctx := context.Background()
	for {
		msg, err := s.ps.ReceiveMessage(ctx)
		if err != nil {
			if !s.closing.Load() {
				s.stopped(err)
			}
			return
		}
		now := time.Now()
		if s.recording.Load() {
			s.record(now, msg.Payload)
		}
		s.arrived(1, now)
	}
}

// record notes one message's latency. The timestamp is PostgreSQL's
// clock_timestamp() at the change, on the same machine and clock.
func (s *subscriber) record(now time.Time, payload string) {
	var lat time.Duration
	ok := false
	if i := strings.Index(payload, timestampField); i >= 0 {
		rest := payload[i+len(timestampField):]
		if j := strings.IndexByte(rest, '"'); j > 0 {
			if ts, err := time.Parse(time.RFC3339Nano, rest[:j]); err == nil {
				lat, ok = now.Sub(ts), true
			}
		}
	}
	s.mu.Lock()
	if ok {
		s.samples = append(s.samples, lat)
	} else {
		s.badStamps++
	}
	s.mu.Unlock()
}

// wake releases the waiters whose count has been reached, with the arrival
// time of the message that reached it.
func (s *counter) wake(n int64, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rest := s.waiters[:0]
	next := int64(math.MaxInt64)
	for _, w := range s.waiters {
		if w.n <= n {
			w.ch <- at
			continue
		}
		rest = append(rest, w)
		next = min(next, w.n)
	}
	s.waiters = rest
	s.watch.Store(next)
}

// wait returns when n messages in all have arrived, with the arrival time
// of the n-th, or an error after timeout.
func (s *counter) wait(ctx context.Context, n int64, timeout time.Duration) (time.Time, error) {
	ch := make(chan time.Time, 1)
	s.mu.Lock()
	s.waiters = append(s.waiters, waiter{n: n, ch: ch})
	s.watch.Store(min(s.watch.Load(), n))
	s.mu.Unlock()
	// The count may have reached n before the waiter was visible to the
	// reader; the reader then did not wake it, so check once more. When
	// the count is exactly n, the latest arrival is the n-th's (or, should
	// one more arrive meanwhile, a moment later); beyond n it is not known,
	// and now is the best bound.
	if c := s.count.Load(); c >= n {
		at := time.Now()
		if c == n {
			at = time.Unix(0, s.lastAt.Load())
		}
		s.wake(c, at)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case at := <-ch:
		return at, nil
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	case <-t.C:
		return time.Time{}, fmt.Errorf("after %s the %s had received %s of %s events", timeout, s.what, thousands(s.count.Load()), thousands(n))
	case <-s.exited:
		return time.Time{}, fmt.Errorf("%s stopped: %w", s.what, s.readErr())
	}
}

func (s *counter) readErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		return errors.New("connection closed")
	}
	return s.err
}

// startRecording starts recording latencies.
func (s *subscriber) startRecording() { s.recording.Store(true) }

// takeSamples stops recording and returns the latencies recorded so far
// and how many messages had no readable timestamp.
func (s *subscriber) takeSamples() ([]time.Duration, int) {
	s.recording.Store(false)
	s.mu.Lock()
	defer s.mu.Unlock()
	out, bad := s.samples, s.badStamps
	s.samples, s.badStamps = nil, 0
	return out, bad
}

// close unsubscribes and disconnects.
func (s *subscriber) close() {
	s.closing.Store(true)
	_ = s.ps.Close()
	_ = s.client.Close()
	<-s.exited
}
