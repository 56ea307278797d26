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
//     a batch's events for that stream and records their ids there, as one
//     field per batch, in one atomic step, skipping events whose ids are
//     recorded already.
//   - When the relay has saved its progress it calls Checkpoint: every event
//     handed out so far is then recorded as delivered, and no relay of that
//     name hands it out again. The next script call for the stream (or an
//     HDEL for a stream the batch does not touch, or OnClose) deletes those
//     batches' fields. So the hash holds what was appended since the last
//     saved progress, plus what a crashed predecessor (or this relay's
//     previous session) appended and has not been handed out and saved
//     since: exactly the events that can come again. Event ids are unique,
//     so a recorded id is never a new event.
//   - A predecessor's batches may come again in another order, spread over
//     several of this relay's batches, so the script splits a batch field it
//     did not write into one field per id, and this relay forgets those id by
//     id, after saving the batch it met them in.
//   - Fencing: the hash also keeps the newest lease token that appended. A
//     relay that lost its lease without knowing (frozen, partitioned) gets
//     ErrFenced instead of appending after its successor.
//
// A crash between saving progress and the next batch leaves that batch's
// field in the hash, split by the next relay into per-id fields that no one
// deletes: a few bytes per event, once per crash, and one HMGET of each
// batch's ids from then on. The cost per batch and stream is one HSET and
// one HDEL of a field listing the batch's ids (sent as one argument), one
// HLEN and one XTRIM, next to the XADDs, in one script.
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
	"slices"
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

// streamBook is the handler's memory, per relay name and stream, of the
// bookkeeping fields in Redis (see append.lua): those written or made
// reachable since the last checkpoint (batch fields, and the ids of events
// skipped as appended before), and those checkpointed but not yet deleted.
type streamBook struct {
	mu    sync.Mutex
	names map[string]map[string]*streamFields
	// tokens are the lease tokens the names last appended under, for the
	// deletes OnClose sends.
	tokens map[string]int64
}

type streamFields struct {
	handed []string
	forget []string
}

// of returns the fields of stream for name, creating them. Call with mu
// held.
func (b *streamBook) of(name, stream string) *streamFields {
	if b.names == nil {
		b.names = make(map[string]map[string]*streamFields)
	}
	streams := b.names[name]
	if streams == nil {
		streams = make(map[string]*streamFields)
		b.names[name] = streams
	}
	f := streams[stream]
	if f == nil {
		f = &streamFields{}
		streams[stream] = f
	}
	return f
}

// checkpoint turns everything handed out for name into fields to forget.
func (b *streamBook) checkpoint(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range b.names[name] {
		f.forget = append(f.forget, f.handed...)
		f.handed = f.handed[:0]
	}
}

// restart drops what was handed out but not checkpointed: a new session
// starts over from the progress saved in PostgreSQL, which need not cover
// it, so it must stay recorded in Redis, where the next script call takes
// it for a predecessor's, until handed out and saved again.
func (b *streamBook) restart() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, streams := range b.names {
		for _, f := range streams {
			f.handed = f.handed[:0]
		}
	}
}

// streamBatch is one stream's part of a batch.
type streamBatch struct {
	stream string
	args   []any
	forget int // how many of the stream's fields to forget args carries
	// ids are the events' ids, comma-separated, and events their JSON:
	// the script's last arguments.
	ids    []byte
	events []any
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
		order  []*streamBatch
		byName = make(map[string]*streamBatch)
	)
	h.streams.mu.Lock()
	for i := range events {
		e := &events[i]
		stream := h.cfg.Channel(e)
		sb := byName[stream]
		if sb == nil {
			sb = &streamBatch{stream: stream}
			var forget, mine []string
			if record {
				f := h.streams.of(d.Name, stream)
				forget = f.forget
				for _, field := range f.handed {
					if strings.HasPrefix(field, "b") {
						mine = append(mine, field)
					}
				}
			}
			sb.forget = len(forget)
			sb.args = make([]any, 0, 8+len(forget)+len(mine)+len(events))
			sb.args = append(sb.args, strconv.FormatInt(d.Token, 10), maxlen, publish, recordArg, len(forget))
			for _, field := range forget {
				sb.args = append(sb.args, field)
			}
			sb.args = append(sb.args, len(mine))
			for _, field := range mine {
				sb.args = append(sb.args, field)
			}
			byName[stream] = sb
			order = append(order, sb)
		}
		start := len(buf)
		buf = e.AppendJSON(buf)
		sb.events = append(sb.events, buf[start:len(buf):len(buf)])
		if len(sb.ids) > 0 {
			sb.ids = append(sb.ids, ',')
		}
		sb.ids = strconv.AppendInt(sb.ids, e.ID, 10)
	}
	for _, sb := range order {
		sb.args = append(append(sb.args, sb.ids), sb.events...)
	}
	var idle []*streamBatch // streams this batch does not touch, with fields to forget
	if record {
		if h.streams.tokens == nil {
			h.streams.tokens = make(map[string]int64)
		}
		h.streams.tokens[d.Name] = d.Token
		for stream, f := range h.streams.names[d.Name] {
			if byName[stream] == nil && len(f.forget) > 0 {
				idle = append(idle, forgetBatch(stream, d.Token, f.forget))
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
			appendScript.EvalSha(ctx, pipe, []string{sb.stream, BookKey(sb.stream, d.Name)}, sb.args...)
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
	for i, sb := range order {
		written, err := cmds[i].StringSlice()
		if err != nil {
			return fmt.Errorf("append to stream %s: read the script's reply: %w", sb.stream, err)
		}
		f := h.streams.of(d.Name, sb.stream)
		f.forget = f.forget[sb.forget:]
		if len(written) > 0 && written[0] != "" && !slices.Contains(f.handed, written[0]) {
			f.handed = append(f.handed, written[0])
		}
		if len(written) > 1 {
			f.handed = append(f.handed, written[1:]...)
		}
	}
	for _, sb := range idle {
		f := h.streams.of(d.Name, sb.stream)
		f.forget = f.forget[sb.forget:]
	}
	return nil
}

// forgetBatch is a script call that appends nothing and deletes the
// checkpointed fields of stream, keeping the list of batches in step.
func forgetBatch(stream string, token int64, forget []string) *streamBatch {
	sb := &streamBatch{stream: stream, forget: len(forget)}
	sb.args = append(sb.args, strconv.FormatInt(token, 10), "0", "", "1", len(forget))
	for _, field := range forget {
		sb.args = append(sb.args, field)
	}
	sb.args = append(sb.args, 0, "")
	return sb
}

// forget deletes, in every stream's bookkeeping hash, the fields
// checkpointed but not yet deleted.
func (h *Handler) forget(ctx context.Context) error {
	h.streams.mu.Lock()
	defer h.streams.mu.Unlock()
	pipe := h.cfg.Client.Pipeline()
	var sent []*streamFields
	for name, streams := range h.streams.names {
		for stream, f := range streams {
			if len(f.forget) > 0 {
				sb := forgetBatch(stream, h.streams.tokens[name], f.forget)
				appendScript.EvalSha(ctx, pipe, []string{stream, BookKey(stream, name)}, sb.args...)
				sent = append(sent, f)
			}
		}
	}
	if len(sent) == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("delete delivered events' records from the stream bookkeeping: %w", err)
	}
	for _, f := range sent {
		f.forget = f.forget[:0]
	}
	return nil
}
