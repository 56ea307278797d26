package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// The flags that make the suite's own binary a reader process: a
// subscriber, or a stream consumer (streamconsumer.go).
const (
	subscriberProcessFlag     = "subscriber-process"
	subscriberRecordFlag      = "record"
	streamConsumerProcessFlag = "stream-consumer-process"
)

// subscriberReply is one line a reader process writes on its standard
// output, as JSON: first {"subscribed":true}, then one reply per request.
type subscriberReply struct {
	Subscribed bool `json:"subscribed,omitempty"`
	// Count is how many messages had arrived when the reply was written.
	Count int64 `json:"count"`
	// At is when the requested message arrived, in Unix nanoseconds by the
	// machine's wall clock, which both processes share.
	At int64 `json:"at"`
	// Latencies are the latencies recorded since the previous reply, in
	// nanoseconds, and Bad how many messages had no readable timestamp.
	Latencies []int64 `json:"latencies,omitempty"`
	Bad       int     `json:"bad,omitempty"`
	Err       string  `json:"err,omitempty"`
}

// runSubscriberProcess is the whole of a subscriber process: the suite's
// subscriber (subscriber.go) on channel, in a process of its own, so that
// what it measures is not shared with the writers' or the relay's runtime.
// It writes {"subscribed":true} once Redis has confirmed the subscription,
// then serves requests (see runReaderProcess).
func runSubscriberProcess(channel string, record bool) int {
	return runReaderProcess("subscriber process", func(ctx context.Context, e *env) (reader, error) {
		sub, err := e.subscribe(ctx, channel)
		if err != nil {
			return reader{}, err
		}
		r := reader{counter: sub.counter, close: sub.close}
		if record {
			sub.startRecording()
			r.samples = func() ([]time.Duration, int) {
				s, bad := sub.takeSamples()
				sub.startRecording()
				return s, bad
			}
		}
		return r, nil
	})
}

// runStreamConsumerProcess is the whole of a stream consumer process: the
// suite's stream consumer (streamconsumer.go) on stream, from its first
// entry. It writes {"subscribed":true} once connected, then serves requests
// (see runReaderProcess).
func runStreamConsumerProcess(stream string) int {
	return runReaderProcess("stream consumer process", func(ctx context.Context, e *env) (reader, error) {
		c, err := e.consumeStream(ctx, stream)
		if err != nil {
			return reader{}, err
		}
		return reader{counter: c.counter, close: c.close}, nil
	})
}

// reader is what a reader process serves requests on.
type reader struct {
	*counter
	// samples, when not nil, returns the latencies recorded since it was
	// last called, and how many messages had no readable timestamp.
	samples func() ([]time.Duration, int)
	close   func()
}

// runReaderProcess opens a reader with open and, once it has, writes
// {"subscribed":true}, then reads requests from standard input, one number
// a line: wait until that many messages in all have arrived, then reply. It
// exits when its input ends.
func runReaderProcess(what string, open func(context.Context, *env) (reader, error)) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", what, err)
		return 1
	}
	opts, err := redis.ParseURL(envOr("TEST_REDIS_URL", defaultRedisURL))
	if err != nil {
		return fail(fmt.Errorf("TEST_REDIS_URL: %w", err))
	}
	e := &env{redis: opts, started: time.Now()}
	rd, err := open(ctx, e)
	if err != nil {
		return fail(err)
	}
	defer rd.close()
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(subscriberReply{Subscribed: true}); err != nil {
		return fail(err)
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var r subscriberReply
		n, err := strconv.ParseInt(strings.TrimSpace(in.Text()), 10, 64)
		if err == nil {
			// The suite times the wait out itself and then ends this
			// process; this timeout only bounds an orphan.
			var at time.Time
			if at, err = rd.wait(ctx, n, time.Hour); err == nil {
				r.At = at.UnixNano()
			}
		}
		if err != nil {
			r.Err = err.Error()
		}
		r.Count = rd.count.Load()
		if rd.samples != nil {
			samples, bad := rd.samples()
			r.Bad = bad
			r.Latencies = make([]int64, len(samples))
			for i, s := range samples {
				r.Latencies[i] = int64(s)
			}
		}
		if err := out.Encode(r); err != nil {
			return fail(err)
		}
	}
	return 0
}

// subscriberProcess is the suite's side of a reader process: a subscriber
// or a stream consumer.
type subscriberProcess struct {
	what    string // "subscriber process", "stream consumer process"
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	replies chan subscriberReply
	closing chan struct{} // closed by close
	exited  chan struct{}
	// last is the reply to the latest wait.
	last subscriberReply
}

// startSubscriberProcess starts the suite's own binary as a subscriber
// process on channel, recording latencies if record is set, and returns
// once Redis has confirmed its subscription.
func (e *env) startSubscriberProcess(ctx context.Context, channel string, record bool) (*subscriberProcess, error) {
	args := []string{"-" + subscriberProcessFlag, channel}
	if record {
		args = append(args, "-"+subscriberRecordFlag)
	}
	return e.startReaderProcess(ctx, "subscriber process", channel, args)
}

// startStreamConsumerProcess starts the suite's own binary as a stream
// consumer process reading stream from its first entry, and returns once
// it has connected.
func (e *env) startStreamConsumerProcess(ctx context.Context, stream string) (*subscriberProcess, error) {
	return e.startReaderProcess(ctx, "stream consumer process", stream, []string{"-" + streamConsumerProcessFlag, stream})
}

// startReaderProcess starts the suite's own binary with args, as the reader
// process what on key, and returns once it has said it is ready.
func (e *env) startReaderProcess(ctx context.Context, what, key string, args []string) (*subscriberProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the suite's binary for a %s: %w", what, err)
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), "TEST_REDIS_URL="+e.redisURL)
	cmd.Stderr = os.Stderr
	// Should the suite be killed outright, the kernel ends this process
	// too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", what, err)
	}
	s := &subscriberProcess{what: what, cmd: cmd, stdin: stdin, replies: make(chan subscriberReply),
		closing: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		defer close(s.exited)
		dec := json.NewDecoder(stdout)
		for {
			var r subscriberReply
			if err := dec.Decode(&r); err != nil {
				// Wait must not find the process blocked on a full
				// pipe.
				_, _ = io.Copy(io.Discard, stdout)
				break
			}
			select {
			case s.replies <- r:
			case <-s.closing:
				// A late reply nobody waits for any more.
			}
		}
		_ = cmd.Wait()
	}()
	r, err := s.reply(ctx, 30*time.Second)
	if err == nil && !r.Subscribed {
		err = errors.New("unexpected first reply")
	}
	if err != nil {
		s.close()
		return nil, fmt.Errorf("%s on %s: %w", what, key, err)
	}
	return s, nil
}

// reply returns the process's next reply.
func (s *subscriberProcess) reply(ctx context.Context, timeout time.Duration) (subscriberReply, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-s.replies:
		if r.Err != "" {
			return r, errors.New(r.Err)
		}
		return r, nil
	case <-s.exited:
		return subscriberReply{}, fmt.Errorf("the %s exited: %s", s.what, s.cmd.ProcessState)
	case <-t.C:
		return subscriberReply{}, fmt.Errorf("no reply from the %s within %s", s.what, timeout)
	case <-ctx.Done():
		return subscriberReply{}, ctx.Err()
	}
}

// wait asks the process to wait for n messages in all and returns the
// arrival time of the n-th. The reply, latencies included, is kept for
// takeSamples. After a timeout the process is no longer usable.
func (s *subscriberProcess) wait(ctx context.Context, n int64, timeout time.Duration) (time.Time, error) {
	if _, err := fmt.Fprintln(s.stdin, n); err != nil {
		return time.Time{}, fmt.Errorf("ask the %s: %w", s.what, err)
	}
	r, err := s.reply(ctx, timeout)
	if err != nil {
		return time.Time{}, fmt.Errorf("waiting for %s events (%s received): %w", thousands(n), thousands(r.Count), err)
	}
	s.last = r
	return time.Unix(0, r.At), nil
}

// takeSamples returns the latencies of the last wait's reply and how many
// messages had no readable timestamp.
func (s *subscriberProcess) takeSamples() ([]time.Duration, int) {
	out := make([]time.Duration, len(s.last.Latencies))
	for i, ns := range s.last.Latencies {
		out[i] = time.Duration(ns)
	}
	return out, s.last.Bad
}

// close ends the process: its input ends, which makes it unsubscribe and
// exit, and it is killed if it has not within a few seconds.
func (s *subscriberProcess) close() {
	close(s.closing)
	_ = s.stdin.Close()
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}
