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

// The flags that make the suite's own binary a subscriber process.
const (
	subscriberProcessFlag = "subscriber-process"
	subscriberRecordFlag  = "record"
)

// subscriberReply is one line a subscriber process writes on its standard
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
// then reads requests from standard input, one number a line: wait until
// that many messages in all have arrived, then reply. It exits when its
// input ends.
func runSubscriberProcess(channel string, record bool) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "bench subscriber process: %v\n", err)
		return 1
	}
	opts, err := redis.ParseURL(envOr("TEST_REDIS_URL", defaultRedisURL))
	if err != nil {
		return fail(fmt.Errorf("TEST_REDIS_URL: %w", err))
	}
	e := &env{redis: opts, started: time.Now()}
	sub, err := e.subscribe(ctx, channel)
	if err != nil {
		return fail(err)
	}
	defer sub.close()
	if record {
		sub.startRecording()
	}
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
			if at, err = sub.wait(ctx, n, time.Hour); err == nil {
				r.At = at.UnixNano()
			}
		}
		if err != nil {
			r.Err = err.Error()
		}
		r.Count = sub.count.Load()
		if record {
			samples, bad := sub.takeSamples()
			sub.startRecording()
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

// subscriberProcess is the suite's side of a subscriber process.
type subscriberProcess struct {
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
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the suite's binary for a subscriber process: %w", err)
	}
	args := []string{"-" + subscriberProcessFlag, channel}
	if record {
		args = append(args, "-"+subscriberRecordFlag)
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
		return nil, fmt.Errorf("start subscriber process: %w", err)
	}
	s := &subscriberProcess{cmd: cmd, stdin: stdin, replies: make(chan subscriberReply),
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
		return nil, fmt.Errorf("subscriber process on %s: %w", channel, err)
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
		return subscriberReply{}, fmt.Errorf("the subscriber process exited: %s", s.cmd.ProcessState)
	case <-t.C:
		return subscriberReply{}, fmt.Errorf("no reply from the subscriber process within %s", timeout)
	case <-ctx.Done():
		return subscriberReply{}, ctx.Err()
	}
}

// wait asks the process to wait for n messages in all and returns the
// arrival time of the n-th. The reply, latencies included, is kept for
// takeSamples. After a timeout the process is no longer usable.
func (s *subscriberProcess) wait(ctx context.Context, n int64, timeout time.Duration) (time.Time, error) {
	if _, err := fmt.Fprintln(s.stdin, n); err != nil {
		return time.Time{}, fmt.Errorf("ask the subscriber process: %w", err)
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
