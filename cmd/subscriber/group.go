package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// pendingCursor is the XREADGROUP ID that reads this consumer's own
// pending entries from the first; newCursor reads entries never delivered
// to anyone in the group.
const (
	pendingCursor = "0"
	newCursor     = ">"
)

// createGroup creates consumer group on stream key, and the stream if it
// is missing, with the group starting after from ($: the stream's end). It
// reports false, and no error, when the group exists already: then from
// does not matter, the group continues where it is.
func createGroup(ctx context.Context, rdb redis.UniversalClient, key, group, from string) (bool, error) {
	err := rdb.XGroupCreateMkStream(ctx, key, group, from).Err()
	if replyIs(err, "BUSYGROUP") {
		return false, nil
	}
	return err == nil, err
}

// groupReader follows one stream as a consumer of a group. Each entry is
// acknowledged (XACK) only after it was written to stdout, so that a
// subscriber that stops, however it stops, leaves unprinted entries
// pending. It first reads its own pending entries again (those delivered to
// it, by an earlier run or before a lost connection, and not acknowledged),
// then new ones; the pending ones all come before the new ones, so the
// stream's order is kept.
//
// The one window: killed after writing an entry and before its XACK, the
// entry is printed again by the next run. Within a run nothing repeats:
// entries up to the last one printed are only acknowledged.
type groupReader struct {
	s                    *session
	key, group, consumer string
	// from is where the group was asked to start, used to create it
	// again should it be gone (and nothing was printed yet).
	from string
	// done is the ID of the last entry printed or skipped, "" before the
	// first: entries up to it are done with, even if their XACK was lost.
	done string
}

// follow prints g's entries until ctx ends or --count is reached.
func (g *groupReader) follow(ctx context.Context) error {
	var b backoff
	cursor := pendingCursor
	for {
		block := time.Duration(-1) // pending entries are there or not: no wait
		if cursor == newCursor {
			block = streamBlock
		}
		res, err := g.s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: g.group, Consumer: g.consumer, Streams: []string{g.key, cursor}, Count: streamBatch, Block: block,
		}).Result()
		if err == nil || errors.Is(err, redis.Nil) {
			b.reset()
			g.s.health.ok(g.key)
			next, stop, herr := g.handleAll(ctx, res, cursor)
			if stop {
				return herr
			}
			if herr == nil {
				cursor = next
				continue
			}
			err = herr
		} else {
			err = fmt.Errorf("read stream %s as consumer %s of group %s: %w", g.key, g.consumer, g.group, err)
		}
		if replyIs(err, "NOGROUP") && !g.s.over(ctx) {
			err = g.recreate(ctx)
		}
		if err != nil {
			if stop, fatal := g.s.retry(ctx, g.key, &b, err); stop {
				return fatal
			}
		}
		// After a failure, or a group created again, entries may have been
		// delivered whose reply never came: read them from the pending.
		cursor = pendingCursor
	}
}

// handleAll prints and acknowledges the entries read with cursor, and
// returns the cursor to read with next: after the last pending entry while
// there are pending ones, then ">". stop means ctx ended, --count was
// reached or stdout failed (err); an error without stop is Redis failing,
// to retry.
func (g *groupReader) handleAll(ctx context.Context, res []redis.XStream, cursor string) (next string, stop bool, err error) {
	var msgs []redis.XMessage
	for _, st := range res {
		msgs = append(msgs, st.Messages...)
	}
	if cursor != newCursor && len(msgs) == 0 {
		return newCursor, false, nil
	}
	for _, m := range msgs {
		if cursor != newCursor {
			cursor = m.ID
		}
		if stop, err := g.handle(ctx, m); stop || err != nil {
			return cursor, stop, err
		}
	}
	return cursor, false, nil
}

// handle prints entry m and acknowledges it, or only acknowledges it when
// it was printed already (its XACK was lost with the connection) or has no
// event. stop means m was not printed because ctx ended, --count was
// reached or stdout failed (the error): it stays pending.
func (g *groupReader) handle(ctx context.Context, m redis.XMessage) (stop bool, err error) {
	if g.done != "" && !idAfter(m.ID, g.done) {
		return false, g.ack(ctx, m.ID)
	}
	g.s.busy.RLock()
	defer g.s.busy.RUnlock()
	if g.s.over(ctx) {
		return true, nil
	}
	if payload, ok := g.s.event(g.key, m); ok {
		res, err := g.s.out.emit(g.key, payload)
		if err != nil || res == limited {
			return true, err
		}
	}
	g.done = m.ID
	// Printed: acknowledge it even if ctx ended meanwhile (a signal, or
	// this was the --count'th event); the client stays open until then.
	return false, g.ack(context.WithoutCancel(ctx), m.ID)
}

// ack acknowledges entry id.
func (g *groupReader) ack(ctx context.Context, id string) error {
	if err := g.s.rdb.XAck(ctx, g.key, g.group, id).Err(); err != nil {
		return fmt.Errorf("acknowledge entry %s of stream %s: %w", id, g.key, err)
	}
	return nil
}

// recreate creates g's group again when it is gone (the stream was
// deleted, or Redis lost its data), starting after the last entry printed,
// or where it was first asked to start.
func (g *groupReader) recreate(ctx context.Context) error {
	at := g.from
	if g.done != "" {
		at = g.done
	}
	if _, err := createGroup(ctx, g.s.rdb, g.key, g.group, at); err != nil {
		return fmt.Errorf("create consumer group %s of stream %s again: %w", g.group, g.key, err)
	}
	fmt.Fprintf(g.s.errOut, "consumer group %s of stream %s was gone: created it again (%s)\n", g.group, g.key, startText(at))
	return nil
}
