// Command filesink shows how little a custom relay.EventHandler needs: it
// appends every captured change to a file as one JSON line, and makes each
// batch durable with a single fsync before telling the relay it was accepted.
//
//	go run ./examples/filesink -out events.jsonl
//
// The database comes from PG_DATABASE_URL or DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres) and must have the cdc schema
// installed, for example with `go run ./cmd/relay ensure-cdc users`. It runs
// until Ctrl-C or SIGTERM.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pgrelay/pgrelay/relay"
)

// defaultDatabaseURL is used when neither PG_DATABASE_URL nor DATABASE_URL is
// set; it matches the relay command's default.
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres"

func main() {
	out := flag.String("out", "events.jsonl", "file to append the events to, one JSON object per line")
	// A name of its own gives the sink its own delivery position, so it
	// receives every event even while a Redis relay ("default") runs too.
	// Sharing a name would make the two take turns instead.
	name := flag.String("name", "filesink", "relay name: its delivery position in cdc.relay_cursor")
	flag.Parse()

	if err := run(*out, *name); err != nil {
		// One line, whatever the error wraps, so that it reads well in logs.
		fmt.Fprintln(os.Stderr, "filesink: "+strings.Join(strings.Fields(err.Error()), " "))
		os.Exit(1)
	}
}

// run relays events into the file at path until a signal arrives.
func run(path, name string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	r, err := relay.New(relay.Config{
		DatabaseURL: databaseURL(),
		Name:        name,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}, &fileSink{path: path})
	if err != nil {
		return err
	}
	// Run returns nil once the signal has stopped the relay, after the
	// batch in flight (if any) has been written or abandoned.
	return r.Run(ctx)
}

// databaseURL returns the PostgreSQL URL from the environment, as the relay
// command reads it, or the local default.
func databaseURL() string {
	for _, env := range []string{"PG_DATABASE_URL", "DATABASE_URL"} {
		if u := os.Getenv(env); u != "" {
			return u
		}
	}
	return defaultDatabaseURL
}

// fileSink appends events to a file as JSON lines. It implements
// relay.BatchHandler so that a whole batch costs one write and one fsync:
// the relay records a batch as delivered once OnEvents returns nil, so
// returning only after the fsync means "accepted" implies "on disk".
//
// Delivery is at least once: after a crash between the fsync and the relay
// saving its position, a batch is written again. Readers should skip lines
// whose event_id they have already seen. The file must have a single writer.
type fileSink struct {
	relay.BaseHandler
	path string

	f    *os.File
	size int64  // length of the file up to its last complete batch
	buf  []byte // reused between batches
}

// The relay checks for BatchHandler at run time; this makes the compiler
// check that fileSink still implements it.
var _ relay.BatchHandler = (*fileSink)(nil)

// OnStart opens the file for appending, creating it if needed. It runs once,
// before the relay connects, so a file that cannot be written stops the relay
// from starting instead of failing every batch.
func (s *fileSink) OnStart(context.Context) error {
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	size, err := trimTornLine(f)
	if err == nil {
		// fsync covers the file's contents, not its directory entry: sync
		// the directory too, or a newly created file could vanish in a
		// crash together with the batches "durably" written into it.
		err = syncDir(filepath.Dir(s.path))
	}
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("open %s: %w", s.path, err)
	}
	s.f, s.size = f, size
	return nil
}

// OnEvent writes one event. The relay calls OnEvents instead, since fileSink
// is a BatchHandler; this keeps the type correct on its own.
func (s *fileSink) OnEvent(ctx context.Context, e relay.Event) error {
	return s.OnEvents(ctx, []relay.Event{e})
}

// OnEvents appends events, one JSON line each, and fsyncs the file once.
// The context is not used: a local write cannot be abandoned halfway.
func (s *fileSink) OnEvents(_ context.Context, events []relay.Event) error {
	// The relay reuses the events' memory after we return; AppendJSON
	// copies them into our own buffer, which we may keep.
	buf := s.buf[:0]
	for i := range events {
		buf = events[i].AppendJSON(buf)
		buf = append(buf, '\n')
	}
	s.buf = buf

	_, err := s.f.Write(buf)
	if err == nil {
		err = s.f.Sync()
	}
	if err != nil {
		// The relay will retry this batch. Cut off whatever part of it got
		// written, so the retry does not leave a torn line in mid-file.
		// After a failed fsync this also matters: the kernel may have
		// dropped the unwritten pages, so the data must be written anew.
		if terr := s.f.Truncate(s.size); terr != nil {
			err = fmt.Errorf("%w; undo partial write: %w", err, terr)
		}
		return fmt.Errorf("append %d events to %s: %w", len(events), s.path, err)
	}
	s.size += int64(len(buf))
	return nil
}

// OnClose closes the file. Everything accepted is already on disk.
func (s *fileSink) OnClose(context.Context) error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// trimTornLine truncates f after its last newline and returns its new size.
// A line without its newline can only come from a crash in the middle of a
// write, before the batch was accepted; the relay delivers that batch again,
// so dropping the fragment loses nothing and keeps every line valid JSON.
func trimTornLine(f *os.File) (int64, error) {
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	// Scan backwards a chunk at a time: rows, and so lines, can be large.
	chunk := make([]byte, 64<<10)
	for pos := end; pos > 0; {
		n := min(int64(len(chunk)), pos)
		pos -= n
		if _, err := f.ReadAt(chunk[:n], pos); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(chunk[:n], '\n'); i >= 0 {
			keep := pos + int64(i) + 1
			if keep == end {
				return end, nil
			}
			return keep, f.Truncate(keep)
		}
	}
	if end == 0 {
		return 0, nil
	}
	// Not a single newline: the whole file is one torn line.
	return 0, f.Truncate(0)
}

// syncDir fsyncs a directory, making the entries created in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
