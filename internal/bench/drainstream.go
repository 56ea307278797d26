package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	redissink "github.com/pgrelay/pgrelay/handlers/redis"
	"github.com/pgrelay/pgrelay/relay"
)

// redisModes are the modes drain-stream compares; the first is what the
// others are compared with.
var redisModes = []redissink.Mode{redissink.ModePubSub, redissink.ModeStream, redissink.ModeBoth}

// streamTarget is how fast the stream mode should drain, relative to
// pub/sub.
const streamTarget = 0.70

// modeDrain is one drain of a backlog in one Redis mode.
type modeDrain struct {
	// all is the time from starting the relay until every reader process
	// had every event.
	all time.Duration
	// held, in the modes that append to the stream, is the time from
	// starting the relay until Redis appended the last entry, by that
	// entry's id (milliseconds of Redis's clock, the machine's).
	held time.Duration
	// relayCPU and redisCPU are the CPU time of the relay process (its
	// whole life) and of the Redis server (from starting the relay until
	// the readers had all).
	relayCPU, redisCPU time.Duration
}

// runDrainStream measures how fast the relay binary drains a backlog in
// each Redis mode, alternated round by round, each until readers in
// processes of their own have every event.
func runDrainStream(ctx context.Context, e *env, sec *Section) error {
	n := e.cfg.drainEvents
	stream := e.channel()
	sec.About = fmt.Sprintf("As in `drain-external`: a backlog of %s events is committed into `cdc` (1,000-row "+
		"transactions) with no relay running, the readers are started, then `relay run` (the binary, default flags "+
		"but `--redis-mode`) is started and timed from starting the process until its readers have every event. "+
		"`pubsub`: a subscriber process (the suite's binary re-run as one) has received every message. `stream` "+
		"(`--stream-maxlen` at its default, 1,000,000: `XADD MAXLEN ~`, never trimming here): a consumer process "+
		"(likewise) reading the stream from its start with `XREAD COUNT %d BLOCK 1000` from the last id read has "+
		"read every entry's `event` field, which is what a consumer sees; the stream's own rate, until Redis had "+
		"appended the last entry (the millisecond time in that entry's id), is reported beside it. `both`: the "+
		"later of a subscriber process and a consumer process. Each round runs every mode once, starting with a "+
		"different mode each round, each on a fresh backlog with fresh readers and relay; the stream and its "+
		"bookkeeping hash are deleted after each drain, and the stream is checked to hold exactly %s entries. %s.",
		thousands(n), streamReadCount, thousands(n), plural(e.cfg.drainRounds, "round"))

	rdb := e.newRedis()
	defer rdb.Close()
	book := redissink.BookKey(stream, relay.DefaultName)
	clean := func(ctx context.Context) error {
		if err := rdb.Del(ctx, stream, book).Err(); err != nil {
			return fmt.Errorf("delete the stream %s and %s: %w", stream, book, err)
		}
		return nil
	}
	defer clean(context.WithoutCancel(ctx)) //nolint:errcheck // best effort, after an error
	if err := clean(ctx); err != nil {
		return err
	}

	rates := map[redissink.Mode][]float64{}
	relayCPU := map[redissink.Mode][]float64{}
	redisCPU := map[redissink.Mode][]float64{}
	var held []float64
	for round := 1; round <= e.cfg.drainRounds; round++ {
		for i := range redisModes {
			mode := redisModes[(round-1+i)%len(redisModes)]
			if err := e.reset(ctx); err != nil {
				return err
			}
			if _, err := e.writeBacklog(ctx, n); err != nil {
				return err
			}
			d, err := drainInMode(ctx, e, rdb, mode, n)
			if err != nil {
				return fmt.Errorf("%s mode: %w", mode, err)
			}
			if err := clean(ctx); err != nil {
				return err
			}
			rates[mode] = append(rates[mode], rate(n, d.all))
			relayCPU[mode] = append(relayCPU[mode], perEvent(d.relayCPU, n))
			redisCPU[mode] = append(redisCPU[mode], perEvent(d.redisCPU, n))
			line := fmt.Sprintf("drain-stream round %d/%d %-6s: %s events/s, %.2fs from starting the relay",
				round, e.cfg.drainRounds, mode, PerSecond.format(rate(n, d.all)), d.all.Seconds())
			if mode == redissink.ModeStream {
				held = append(held, rate(n, d.held))
				line += fmt.Sprintf(" (the stream held all after %.2fs: %s events/s)", d.held.Seconds(), PerSecond.format(rate(n, d.held)))
			}
			e.progress("%s; CPU per event: relay %s µs, Redis %s µs", line,
				Decimal.format(perEvent(d.relayCPU, n)), Decimal.format(perEvent(d.redisCPU, n)))
		}
		e.progress("drain-stream round %d/%d: stream ÷ pubsub %s, both ÷ pubsub %s", round, e.cfg.drainRounds,
			Ratio.format(rates[redissink.ModeStream][round-1]/rates[redissink.ModePubSub][round-1]),
			Ratio.format(rates[redissink.ModeBoth][round-1]/rates[redissink.ModePubSub][round-1]))
	}
	pubsub, streamed, both := rates[redissink.ModePubSub], rates[redissink.ModeStream], rates[redissink.ModeBoth]
	sec.add("pubsub, events/s (until the subscriber process has all)", PerSecond, pubsub)
	sec.add("stream, events/s (until the consumer process has read all)", PerSecond, streamed)
	sec.add("stream, events/s (until the stream holds all, by the last entry's id)", PerSecond, held)
	sec.add("both, events/s (until the subscriber and the consumer processes have all)", PerSecond, both)
	sec.add("stream ÷ pubsub", Ratio, ratios(streamed, pubsub)).Target = &Target{Value: streamTarget}
	sec.add("both ÷ pubsub", Ratio, ratios(both, pubsub))
	for _, m := range redisModes {
		sec.add(fmt.Sprintf("%s: relay CPU, µs per event", m), Decimal, relayCPU[m])
	}
	for _, m := range redisModes {
		sec.add(fmt.Sprintf("%s: Redis CPU, µs per event", m), Decimal, redisCPU[m])
	}
	sec.note("The ratios pair the modes' drains of the same round. The relay's CPU is its process's user and " +
		"system time over its whole life (start-up, the drain, shutdown); Redis's is `used_cpu_user` + " +
		"`used_cpu_sys` from `INFO cpu` over the drain, serving the readers included, and counts whatever else " +
		"used that Redis server meanwhile.")
	return nil
}

// perEvent returns d per event, in microseconds.
func perEvent(d time.Duration, n int64) float64 {
	return float64(d) / float64(time.Microsecond) / float64(n)
}

// drainInMode starts the readers of mode, then `relay run --redis-mode
// mode` on the backlog of n events in the outbox, and times it until the
// readers have every event.
func drainInMode(ctx context.Context, e *env, rdb *redis.Client, mode redissink.Mode, n int64) (modeDrain, error) {
	stream := e.channel()
	var readers []receiver
	defer func() {
		for _, r := range readers {
			r.close()
		}
	}()
	if mode != redissink.ModeStream {
		sub, err := e.startSubscriberProcess(ctx, e.channel(), false)
		if err != nil {
			return modeDrain{}, err
		}
		readers = append(readers, sub)
	}
	if mode != redissink.ModePubSub {
		c, err := e.startStreamConsumerProcess(ctx, stream)
		if err != nil {
			return modeDrain{}, err
		}
		readers = append(readers, c)
	}
	cpu0, err := redisCPU(ctx, rdb)
	if err != nil {
		return modeDrain{}, err
	}
	start := time.Now()
	proc, err := e.startRelayProcess(e.dbURL, "--redis-mode", string(mode))
	if err != nil {
		return modeDrain{}, err
	}
	stopped := false
	defer func() {
		if !stopped {
			proc.stop()
		}
	}()
	var last time.Time
	for _, r := range readers {
		at, err := r.wait(ctx, n, drainTimeout(n))
		if err != nil {
			return modeDrain{}, err
		}
		if at.After(last) {
			last = at
		}
	}
	cpu1, err := redisCPU(ctx, rdb)
	if err != nil {
		return modeDrain{}, err
	}
	if err := proc.running(); err != nil {
		return modeDrain{}, err
	}
	proc.stop()
	stopped = true
	d := modeDrain{
		all:      last.Sub(start),
		relayCPU: proc.cmd.ProcessState.UserTime() + proc.cmd.ProcessState.SystemTime(),
		redisCPU: cpu1 - cpu0,
	}
	if mode == redissink.ModePubSub {
		return d, nil
	}
	held, err := rdb.XLen(ctx, stream).Result()
	if err != nil {
		return d, fmt.Errorf("XLEN %s: %w", stream, err)
	}
	if held != n {
		return d, fmt.Errorf("the stream holds %s entries for %s events written", thousands(held), thousands(n))
	}
	lastEntry, err := rdb.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	if err != nil || len(lastEntry) != 1 {
		return d, fmt.Errorf("read the stream's last entry: %v", err)
	}
	ms, _, _ := strings.Cut(lastEntry[0].ID, "-")
	at, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return d, fmt.Errorf("stream entry id %q: %w", lastEntry[0].ID, err)
	}
	d.held = time.UnixMilli(at).Sub(start)
	return d, nil
}

// redisCPU returns the CPU time the Redis server has used, user and system.
func redisCPU(ctx context.Context, rdb *redis.Client) (time.Duration, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("INFO cpu: %w", err)
	}
	var total float64
	found := 0
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("INFO cpu %s: %w", k, err)
			}
			total += f
			found++
		}
	}
	if found != 2 {
		return 0, fmt.Errorf("INFO cpu has no used_cpu_user and used_cpu_sys")
	}
	return time.Duration(total * float64(time.Second)), nil
}
