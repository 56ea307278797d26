package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Stream reads: how many entries one read returns at most, and how long it
// waits for new ones before it is sent again (which also notices a
// connection that died silently).
const (
	streamBatch = 100
	streamBlock = 5 * time.Second
)

// eventField is the stream entry field holding the event JSON.
const eventField = "event"

// runStreams prints the entries of cfg's streams until ctx ends, each
// stream read by its own goroutine: on a cluster each stream lives on its
// slot's node, and one XREAD of streams in different slots is refused
// (CROSSSLOT). Each stream's entries are printed in order; how the streams
// interleave is how they arrive. Setting up (finding where to start,
// creating the groups) failing is an error; later failures are retried
// until Redis is back, resuming after the last entry printed.
func runStreams(ctx context.Context, s *session, cfg *config, errOut io.Writer) error {
	keys := append([]string(nil), cfg.names...)
	for _, c := range cfg.customs {
		// A custom events' stream is read only where there is one, so
		// that a group is not made on a stream nobody writes.
		n, err := s.rdb.Exists(ctx, c).Result()
		if err != nil {
			return s.stopped(ctx, fmt.Errorf("look for stream %s: %w", c, err))
		}
		if n > 0 {
			keys = append(keys, c)
		}
	}
	fns := make([]func(context.Context) error, len(keys))
	var existing []string
	for i, key := range keys {
		if cfg.group == "" {
			start, err := startID(ctx, s.rdb, key, cfg.from)
			if err != nil {
				return s.stopped(ctx, fmt.Errorf("read stream %s: %w", key, err))
			}
			fns[i] = (&streamReader{s: s, key: key, last: start}).follow
			continue
		}
		created, err := createGroup(ctx, s.rdb, key, cfg.group, cfg.from)
		if err != nil {
			return s.stopped(ctx, fmt.Errorf("create consumer group %s of stream %s: %w", cfg.group, key, err))
		}
		if !created {
			existing = append(existing, key)
		}
		fns[i] = (&groupReader{s: s, key: key, group: cfg.group, consumer: cfg.consumer, from: cfg.from}).follow
	}
	streams := strings.Join(keys, ", ")
	if cfg.group == "" {
		fmt.Fprintf(errOut, "reading stream %s (%s)\n", streams, startText(cfg.from))
		return runAll(ctx, fns)
	}
	fmt.Fprintf(errOut, "reading stream %s as consumer %s of group %s\n", streams, cfg.consumer, cfg.group)
	if cfg.fromSet && len(existing) > 0 {
		fmt.Fprintf(errOut, "--from %s ignored for %s: group %s exists and continues where it is\n",
			cfg.from, strings.Join(existing, ", "), cfg.group)
	}
	return runAll(ctx, fns)
}

// startText describes where reading from entry ID id starts.
func startText(id string) string {
	switch id {
	case "$":
		return "new entries only"
	case "0", "0-0":
		return "from the start"
	}
	return "after entry " + id
}

// startID returns the ID to read stream key after: from itself, or for $
// the stream's last entry now (0-0 for an empty or missing stream). XREAD
// is never sent $ itself, which would skip whatever arrived between two
// reads.
func startID(ctx context.Context, rdb redis.UniversalClient, key, from string) (string, error) {
	if from != "$" {
		return from, nil
	}
	last, err := rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
	if err != nil {
		return "", err
	}
	if len(last) == 0 {
		return "0-0", nil
	}
	return last[0].ID, nil
}

// streamReader follows one stream with XREAD, without a group.
type streamReader struct {
	s   *session
	key string
	// last is the ID of the last entry printed (or skipped), where the
	// next read, also after a reconnection, starts.
	last string
}

// follow prints r's stream until ctx ends or --count is reached.
func (r *streamReader) follow(ctx context.Context) error {
	var b backoff
	for {
		res, err := r.s.rdb.XRead(ctx, &redis.XReadArgs{
			Streams: []string{r.key, r.last}, Count: streamBatch, Block: streamBlock,
		}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			if stop, fatal := r.s.retry(ctx, r.key, &b, fmt.Errorf("read stream %s: %w", r.key, err)); stop {
				return fatal
			}
			continue
		}
		b.reset()
		r.s.health.ok(r.key)
		for _, st := range res {
			for _, m := range st.Messages {
				if payload, ok := r.s.event(r.key, m); ok {
					res, err := r.s.out.emit(r.key, payload)
					if err != nil {
						return err
					}
					if res == limited {
						return nil
					}
				}
				r.last = m.ID
			}
		}
	}
}

// event returns the event JSON of stream entry m, or false after a warning
// when it has none.
func (s *session) event(key string, m redis.XMessage) (string, bool) {
	if m.Values == nil {
		fmt.Fprintf(s.errOut, "skipped entry %s of %s: it was deleted from the stream before it was printed\n", m.ID, key)
		return "", false
	}
	payload, ok := m.Values[eventField].(string)
	if !ok {
		fmt.Fprintf(s.errOut, "skipped entry %s of %s: it has no %q field\n", m.ID, key, eventField)
	}
	return payload, ok
}

// idAfter reports whether stream entry ID a comes after b. IDs are
// milliseconds and a sequence number, "1700000000000-3".
func idAfter(a, b string) bool {
	am, as := splitID(a)
	bm, bs := splitID(b)
	return am > bm || am == bm && as > bs
}

// splitID parses a stream entry ID into its two numbers; a missing
// sequence number is 0.
func splitID(id string) (ms, seq uint64) {
	msText, seqText, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(msText, 10, 64)
	seq, _ = strconv.ParseUint(seqText, 10, 64)
	return ms, seq
}
