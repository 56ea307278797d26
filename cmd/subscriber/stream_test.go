package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
)

// xadd appends each event to stream as the relay does, returning the IDs.
func xadd(t *testing.T, ctx context.Context, rdb redis.Cmdable, stream string, events ...string) []string {
	t.Helper()
	ids := make([]string, len(events))
	for i, e := range events {
		id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"event", e, "relay", "test"}}).Result()
		require.NoError(t, err)
		ids[i] = id
	}
	return ids
}

// newStream returns a stream name of its own for the test, deleted at the
// end, with the table it is named after.
func newStream(t *testing.T, rdb redis.Cmdable) (table, stream string) {
	table = testenv.UniqueName("sub_")
	stream = "public." + table + ".cdc_events"
	t.Cleanup(func() { rdb.Del(context.Background(), stream) })
	return table, stream
}

func TestStreamFromStart(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	table, stream := newStream(t, rdb)
	want := inserts(table, 1, 3)
	xadd(t, ctx, rdb, stream, want[0])
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"other", "x"}}).Err())
	xadd(t, ctx, rdb, stream, want[1:]...)

	r := runApp(ctx, "--redis-url", testenv.RedisURL(), "--stream", "--from", "0", "--count", "3", table)
	require.NoError(t, r.wait(t, ctx))
	assert.Equal(t, want, r.stdout.lines())
	assert.Contains(t, r.stderr.String(), "reading stream "+stream+" (from the start)\n")
	assert.Regexp(t, `skipped entry \d+-\d+ of `+stream+`: it has no "event" field`, r.stderr.String())
}

func TestStreamNewEntriesOnly(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	table, stream := newStream(t, rdb)
	xadd(t, ctx, rdb, stream, inserts(table, 1, 2)...)

	r := runApp(ctx, "--redis-url", testenv.RedisURL(), "--stream", table)
	r.stderr.waitFor(t, ctx, "reading stream "+stream+" (new entries only)\n")
	want := inserts(table, 3, 4)
	xadd(t, ctx, rdb, stream, want...)
	assert.Equal(t, want, r.stdout.waitLines(t, ctx, 2))
	require.NoError(t, r.stop(t, ctx))
	assert.Equal(t, want, r.stdout.lines())
}

func TestStreamNewEntriesOfAMissingStream(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	table, stream := newStream(t, rdb)
	r := runApp(ctx, "--redis-url", testenv.RedisURL(), "--stream", "--count", "1", stream)
	r.stderr.waitFor(t, ctx, "reading stream "+stream)
	want := inserts(table, 1, 1)
	xadd(t, ctx, rdb, stream, want...)
	require.NoError(t, r.wait(t, ctx))
	assert.Equal(t, want, r.stdout.lines())
}

func TestStreamAfterID(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	table, stream := newStream(t, rdb)
	events := inserts(table, 1, 3)
	ids := xadd(t, ctx, rdb, stream, events...)
	r := runApp(ctx, "--redis-url", testenv.RedisURL(), "--stream", "--from", ids[0], "--count", "2", table)
	require.NoError(t, r.wait(t, ctx))
	assert.Equal(t, events[1:], r.stdout.lines())
	assert.Contains(t, r.stderr.String(), "(after entry "+ids[0]+")")
}

func TestStreamSeveralKeepEachOrder(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	tableA, streamA := newStream(t, rdb)
	tableB, streamB := newStream(t, rdb)
	a, b := inserts(tableA, 1, 50), inserts(tableB, 1, 50)
	for i := range a {
		xadd(t, ctx, rdb, streamA, a[i])
		xadd(t, ctx, rdb, streamB, b[i])
	}
	r := runApp(ctx, "--redis-url", testenv.RedisURL(), "--stream", "--from", "0", "--count", "100", tableA, tableB)
	require.NoError(t, r.wait(t, ctx))
	gotA, gotB := splitByTable(t, r.stdout.lines(), tableA, tableB)
	assert.Equal(t, a, gotA)
	assert.Equal(t, b, gotB)
}

// splitByTable sorts event lines by the table named in them.
func splitByTable(t *testing.T, lines []string, tableA, tableB string) (a, b []string) {
	t.Helper()
	for _, l := range lines {
		switch {
		case strings.Contains(l, `"table":"`+tableA+`"`):
			a = append(a, l)
		case strings.Contains(l, `"table":"`+tableB+`"`):
			b = append(b, l)
		default:
			t.Fatalf("line of neither table: %s", l)
		}
	}
	return a, b
}

// TestGroupCountLeavesTheRestPending checks that entries read but not
// printed (beyond --count) stay pending for the consumer, and come first
// in its next run.
func TestGroupCountLeavesTheRestPending(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	table, stream := newStream(t, rdb)
	events := inserts(table, 1, 4)
	xadd(t, ctx, rdb, stream, events[:3]...)
	args := []string{"--redis-url", testenv.RedisURL(), "--stream", "--from", "0", "--group", "g", "--consumer", "c1"}

	r := runApp(ctx, append(args, "--count", "2", table)...)
	require.NoError(t, r.wait(t, ctx))
	assert.Equal(t, events[:2], r.stdout.lines())
	pending, err := rdb.XPending(ctx, stream, "g").Result()
	require.NoError(t, err)
	assert.EqualValues(t, 1, pending.Count, "the third was read, not printed, not acknowledged")

	xadd(t, ctx, rdb, stream, events[3])
	r = runApp(ctx, append(args, "--count", "2", table)...)
	require.NoError(t, r.wait(t, ctx))
	assert.Equal(t, events[2:], r.stdout.lines())
	assert.Contains(t, r.stderr.String(), "--from 0 ignored for "+stream+": group g exists")
	pending, err = rdb.XPending(ctx, stream, "g").Result()
	require.NoError(t, err)
	assert.Zero(t, pending.Count)
}

// TestGroupResumesAfterKill runs the subscriber as a process, kills it
// with SIGKILL, and checks that its runs together print every entry once,
// in order: entries added while it was down, and entries delivered to it
// but never printed (as when it is killed between reading and printing),
// come when it is back.
func TestGroupResumesAfterKill(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	table, stream := newStream(t, rdb)
	events := inserts(table, 1, 11)
	args := []string{"--redis-url", testenv.RedisURL(), "--stream", "--group", "g", "--consumer", "c1", table}

	first := startProc(t, args...)
	first.stderr.waitFor(t, ctx, "reading stream "+stream+" as consumer c1 of group g\n")
	xadd(t, ctx, rdb, stream, events[:5]...)
	first.stdout.waitLines(t, ctx, 5)
	// Killed while waiting for new entries, all five acknowledged: the
	// deterministic case (not the window between a write and its XACK).
	waitPending(t, ctx, rdb, stream, 0)
	first.signal(t, ctx, syscall.SIGKILL)

	xadd(t, ctx, rdb, stream, events[5:10]...)
	// Two entries delivered to c1 and never printed, as if it had been
	// killed after reading them.
	claimed, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c1", Streams: []string{stream, ">"}, Count: 2, Block: -1}).Result()
	require.NoError(t, err)
	require.Len(t, claimed[0].Messages, 2)

	second := startProc(t, args...)
	second.stdout.waitLines(t, ctx, 5)
	xadd(t, ctx, rdb, stream, events[10])
	second.stdout.waitLines(t, ctx, 6)
	waitPending(t, ctx, rdb, stream, 0)
	second.signal(t, ctx, syscall.SIGTERM)
	require.NoError(t, second.err, "SIGTERM is a normal end")

	assert.Equal(t, events, append(first.stdout.lines(), second.stdout.lines()...))
}

// waitPending waits until stream's group g has n entries pending: the
// subscriber acknowledges right after printing, so shortly after a line.
func waitPending(t *testing.T, ctx context.Context, rdb *redis.Client, stream string, n int64) {
	t.Helper()
	// XPENDING has no blocking form: poll, with the test's deadline.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		p, err := rdb.XPending(ctx, stream, "g").Result()
		require.NoError(t, err)
		if p.Count == n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %d pending, want %d", stream, p.Count, n)
		case <-tick.C:
		}
	}
}

// TestGroupDefaultConsumer checks the consumer name used without
// --consumer: the host name, the same in every run.
func TestGroupDefaultConsumer(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	table, stream := newStream(t, rdb)
	r := runApp(ctx, "--redis-url", testenv.RedisURL(), "--stream", "--group", "g", "--from", "0", "--count", "1", table)
	xadd(t, ctx, rdb, stream, inserts(table, 1, 1)...)
	require.NoError(t, r.wait(t, ctx))
	consumers, err := rdb.XInfoConsumers(ctx, stream, "g").Result()
	require.NoError(t, err)
	require.Len(t, consumers, 1)
	assert.Equal(t, defaultConsumer(), consumers[0].Name)
	assert.Contains(t, r.stderr.String(), "as consumer "+defaultConsumer()+" of group g")
}

// TestGroupCreatedAgain destroys the group under a subscriber: it creates
// the group again after the last entry it printed, and goes on.
func TestGroupCreatedAgain(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	table, stream := newStream(t, rdb)
	events := inserts(table, 1, 4)
	r := runApp(ctx, "--redis-url", testenv.RedisURL(), "--stream", "--group", "g", "--consumer", "c1", table)
	r.stderr.waitFor(t, ctx, "as consumer c1 of group g")
	ids := xadd(t, ctx, rdb, stream, events[:2]...)
	r.stdout.waitLines(t, ctx, 2)
	require.NoError(t, rdb.XGroupDestroy(ctx, stream, "g").Err())
	r.stderr.waitFor(t, ctx, "consumer group g of stream "+stream+" was gone: created it again (after entry "+ids[1]+")\n")
	xadd(t, ctx, rdb, stream, events[2:]...)
	r.stdout.waitLines(t, ctx, 4)
	require.NoError(t, r.stop(t, ctx))
	assert.Equal(t, events, r.stdout.lines())
}
