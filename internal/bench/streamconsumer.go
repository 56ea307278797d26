package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// streamReadCount is how many entries the stream consumer asks for per
// XREAD: as many as the relay's default batch.
const streamReadCount = 1000

// streamConsumer reads one Redis stream from its first entry over a
// connection of its own, as an application would (XREAD COUNT … BLOCK …
// from the last id read), and counts the entries, each one's event read
// from its "event" field. Entries that arrive in one reply count as
// arriving together.
type streamConsumer struct {
	*counter
	client  *redis.Client
	stream  string
	closing atomic.Bool
}

// consumeStream connects and starts reading stream from its beginning; the
// stream need not exist yet.
func (e *env) consumeStream(ctx context.Context, stream string) (*streamConsumer, error) {
	c := &streamConsumer{counter: newCounter("stream consumer"), client: e.newRedis(), stream: stream}
	if err := c.client.Ping(ctx).Err(); err != nil {
		_ = c.client.Close()
		return nil, fmt.Errorf("stream consumer on %s: %w", stream, err)
	}
	go c.read()
	return c, nil
}

func (c *streamConsumer) read() {
	defer close(c.exited)
	ctx := context.Background()
	last := "0-0"
	for {
		res, err := c.client.XRead(ctx, &redis.XReadArgs{
			Streams: []string{c.stream, last},
			Count:   streamReadCount,
			Block:   time.Second,
		}).Result()
		if c.closing.Load() {
			return
		}
		if errors.Is(err, redis.Nil) { // nothing new within the block
			continue
		}
		if err != nil {
			c.stopped(err)
			return
		}
		now := time.Now()
		k := int64(0)
		for _, s := range res {
			for _, m := range s.Messages {
				if ev, _ := m.Values["event"].(string); ev == "" {
					c.stopped(fmt.Errorf("stream entry %s has no event field", m.ID))
					return
				}
				last = m.ID
			}
			k += int64(len(s.Messages))
		}
		c.arrived(k, now)
	}
}

// close stops reading and disconnects.
func (c *streamConsumer) close() {
	c.closing.Store(true)
	_ = c.client.Close()
	<-c.exited
}
