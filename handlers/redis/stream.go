package redis

// Exactly once into a stream.
//
// The relay delivers at least once: after a crash, or when a standby takes
// over, the events of the last batch that was not yet recorded as
// delivered in PostgreSQL are handed out again, possibly in another order
// and mixed with newer ones. Redis must therefore remember which events it
// appended until PostgreSQL has recorded them, and only until then:
//
//   - Each stream has, per relay name, a bookkeeping hash in the stream's
//     hash slot ("pgrelay:{<stream>}:<name>"). The script append.lua appends
//     a batch's events for that stream and records their ids there, in one
//     atomic step, skipping events whose ids are recorded already.
//   - When the relay has saved its progress it calls Checkpoint: every event
//     handed out so far is then recorded as delivered, and no relay of that
//     name hands it out again. The next script call for the stream (or an
//     HDEL for a stream the batch does not touch, or OnClose) deletes those
//     ids. So the hash holds what was appended since the last saved
//     progress, plus what a crashed predecessor appended and its successor
//     has not yet handed out and saved: exactly the events that can come
//     again. Event ids are unique, so a recorded id is never a new event.
//   - Fencing: the hash also keeps the newest lease token that appended. A
//     relay that lost its lease without knowing (frozen, partitioned) gets
//     ErrFenced instead of appending after its successor.
//
// A crash between saving progress and the next batch leaves that batch's
// ids in the hashes for good: a few bytes per event, once per crash.
// The cost per event is one hash field written and deleted next to the
// XADD, inside scripts that run one per stream per batch.
//
// On Redis Cluster the stream and its hash share a slot, so the above
// holds per stream; a batch touching several streams is appended stream by
// stream, not atomically across them. On one Redis or a cluster, writes
// acknowledged by a master that fails before its replica got them are lost
// with their record (Redis replication is asynchronous).

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"

	"github.com/pgrelay/pgrelay/relay"
)

//go:embed append.lua
var appendSource string

var appendScript = goredis.NewScript(appendSource)

// ErrFenced is returned when a relay whose lease has been taken over tries
// to append: the relay stops and stands by.
var ErrFenced = errors.New("a newer relay of this name appends to the stream: this relay lost its lease")

// BookKey returns the name of the bookkeeping hash of stream for relay
// name: in the stream's hash slot, so that a script can touch both on a
// cluster.
func BookKey(stream, name string) string {
	return "pgrelay:{" + hashTag(stream) + "}:" + name
}

// hashTag returns the part of key that Redis Cluster hashes: the text
// between the first '{' and the next '}' when it is not empty, else all of
// it.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// streamBook is the handler's memory of event ids per relay name and
// stream: handed out since the last checkpoint, and checkpointed but not
// yet deleted from Redis.
type streamBook struct {
	mu    sync.Mutex
	names map[string]map[string]*streamIDs
}

type streamIDs struct {
	handed []string
	forget []string
}

// of returns the ids of stream for name, creating them. Call with mu held.
func (b *streamBook) of(name, stream string) *streamIDs {
	if b.names == nil {
		b.names = make(map[string]map[string]*streamIDs)
	}
	streams := b.names[name]
	if streams == nil {
		streams = make(map[string]*streamIDs)
		b.names[name] = streams
	}
	ids := streams[stream]
	if ids == nil {
		ids = &streamIDs{}
		streams[stream] = ids
	}
	return ids
}

// checkpoint turns everything handed out for name into ids to forget.
func (b *streamBook) checkpoint(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ids := range b.names[name] {
		ids.forget = append(ids.forget, ids.handed...)
		ids.handed = ids.handed[:0]
	}
}

// restart drops what was handed out but not checkpointed: a new session
// starts over from the progress saved in PostgreSQL, which need not cover
// it, so it must stay recorded in Redis until handed out and saved again.
func (b *streamBook) restart() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, streams := range b.names {
		for _, ids := range streams {
			ids.handed = ids.handed[:0]
		}
	}
}

// streamBatch is one stream's part of a batch.
type streamBatch struct {
	stream string
	args   []any
	ids    []string
	forget int // how many of the stream's forget ids args carries
}

// appendStreams appends events to their streams, one script per stream,
// all in one pipeline.
func (h *Handler) appendStreams(ctx context.Context, events []relay.Event) error {
	d, record := relay.DeliveryOf(ctx)
	publish := ""
	if h.cfg.Mode == ModeBoth {
		publish = "c"
		if h.cfg.PubSub == PubSubSharded {
			publish = "s"
		}
	}
	maxlen := "0"
	if h.cfg.StreamMaxLen > 0 {
		maxlen = strconv.FormatInt(h.cfg.StreamMaxLen, 10)
	}
	recordArg := "0"
	if record {
		recordArg = "1"
	}

	buf, done := h.buffer()
	defer func() { done(buf) }()
	var (
		order   []*streamBatch
		byName  = make(map[string]*streamBatch)
		touched = make(map[string]bool)
	)
	h.streams.mu.Lock()
	for i := range events {
		e := &events[i]
		stream := h.cfg.Channel(e)
		sb := byName[stream]
		if sb == nil {
			sb = &streamBatch{stream: stream}
			var forget []string
			if record {
				forget = h.streams.of(d.Name, stream).forget
			}
			sb.forget = len(forget)
			sb.args = make([]any, 0, 5+len(forget)+2*len(events))
			sb.args = append(sb.args, strconv.FormatInt(d.Token, 10), maxlen, publish, recordArg, len(forget))
			for _, id := range forget {
				sb.args = append(sb.args, id)
			}
			byName[stream] = sb
			touched[stream] = true
			order = append(order, sb)
		}
		start := len(buf)
		buf = e.AppendJSON(buf)
		id := strconv.FormatInt(e.ID, 10)
		sb.ids = append(sb.ids, id)
		sb.args = append(sb.args, id, buf[start:len(buf):len(buf)])
	}
	var idle []*streamBatch // streams this batch does not touch, with ids to forget
	if record {
		for stream, ids := range h.streams.names[d.Name] {
			if !touched[stream] && len(ids.forget) > 0 {
				idle = append(idle, &streamBatch{stream: stream, ids: ids.forget, forget: len(ids.forget)})
			}
		}
	}
	h.streams.mu.Unlock()

	run := func() ([]*goredis.Cmd, error) {
		pipe := h.cfg.Client.Pipeline()
		cmds := make([]*goredis.Cmd, len(order))
		for i, sb := range order {
			cmds[i] = appendScript.EvalSha(ctx, pipe, []string{sb.stream, BookKey(sb.stream, d.Name)}, sb.args...)
		}
		for _, sb := range idle {
			pipe.HDel(ctx, BookKey(sb.stream, d.Name), sb.ids...)
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	cmds, err := run()
	if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		// Redis restarted or failed over, and forgot the script loaded
		// at connect. The batch is deduplicated, so sending it again is safe.
		if lerr := appendScript.Load(ctx, h.cfg.Client).Err(); lerr != nil {
			return fmt.Errorf("reload the stream script into redis: %w", lerr)
		}
		cmds, err = run()
	}
	if err != nil {
		for _, c := range cmds {
			if c != nil && c.Err() != nil && strings.HasPrefix(c.Err().Error(), "PGRELAY_FENCED") {
				return fmt.Errorf("append to stream %s: %w (%v)", c.Args()[3], ErrFenced, c.Err())
			}
		}
		return fmt.Errorf("append %d events to redis streams: %w", len(events), err)
	}
	if !record {
		return nil
	}
	h.streams.mu.Lock()
	defer h.streams.mu.Unlock()
	for _, sb := range order {
		ids := h.streams.of(d.Name, sb.stream)
		ids.forget = ids.forget[sb.forget:]
		ids.handed = append(ids.handed, sb.ids...)
	}
	for _, sb := range idle {
		ids := h.streams.of(d.Name, sb.stream)
		ids.forget = ids.forget[sb.forget:]
	}
	return nil
}

// forget deletes, in every stream's bookkeeping hash, the ids checkpointed
// but not yet deleted.
func (h *Handler) forget(ctx context.Context) error {
	h.streams.mu.Lock()
	defer h.streams.mu.Unlock()
	pipe := h.cfg.Client.Pipeline()
	var sent []*streamIDs
	for name, streams := range h.streams.names {
		for stream, ids := range streams {
			if len(ids.forget) > 0 {
				pipe.HDel(ctx, BookKey(stream, name), ids.forget...)
				sent = append(sent, ids)
			}
		}
	}
	if len(sent) == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("delete delivered events' ids from the stream bookkeeping: %w", err)
	}
	for _, ids := range sent {
		ids.forget = ids.forget[:0]
	}
	return nil
}
