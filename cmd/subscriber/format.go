package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/pgrelay/pgrelay/relay"
)

// outcome is what the printer did with a message.
type outcome int

const (
	// printed: the event was written to stdout.
	printed outcome = iota
	// skipped: --actions filtered it out, or it was no event and could not
	// be filtered; it is done with all the same (acknowledged in a group).
	skipped
	// limited: --count events were printed already; the message was not
	// written and is not done with (a group leaves it pending).
	limited
)

// outputError is a failure to write to stdout: never retried, unlike
// errors from Redis.
type outputError struct{ err error }

func (e *outputError) Error() string { return "write to stdout: " + e.err.Error() }
func (e *outputError) Unwrap() error { return e.err }

// printer writes events to stdout, one line each, in the configured format,
// applying --actions and --count. It is safe for concurrent use; each line
// is written whole, with one Write.
type printer struct {
	mu      sync.Mutex
	out     io.Writer
	errOut  io.Writer
	pretty  bool
	color   bool
	actions map[relay.Action]bool
	limit   int
	printed int
	// reached is called once, when the limit'th event has been written.
	reached func()
}

// newPrinter returns a printer writing to out as cfg says, warning on
// errOut, and calling reached when --count events have been printed.
func newPrinter(cfg *config, out, errOut io.Writer, reached func()) *printer {
	return &printer{out: out, errOut: errOut, pretty: cfg.pretty, color: cfg.color,
		actions: cfg.actions, limit: cfg.count, reached: reached}
}

// wireEvent is the part of the event JSON (see relay.Event.MarshalJSON)
// that filtering and the pretty format read.
type wireEvent struct {
	Schema  string          `json:"schema"`
	Table   string          `json:"table"`
	Channel string          `json:"channel"` // for an event of no table
	Action  relay.Action    `json:"action"`
	Key     json.RawMessage `json:"id"`
	Data    json.RawMessage `json:"data"`
	Changes []struct {
		Field string          `json:"field"`
		Old   json.RawMessage `json:"old"`
		New   json.RawMessage `json:"new"`
	} `json:"changes"`
}

// emit writes payload, the event JSON received from source (a channel or
// stream), unless the filter or the limit stops it. In JSON format the line
// is payload exactly; a payload that is no event is printed as it is too,
// unless --actions needs its action, when it is skipped with a warning.
func (p *printer) emit(source, payload string) (outcome, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.limit > 0 && p.printed >= p.limit {
		return limited, nil
	}
	var line []byte
	if p.pretty || p.actions != nil {
		var e wireEvent
		if err := json.Unmarshal([]byte(payload), &e); err != nil || e.Action == "" {
			if p.actions != nil {
				fmt.Fprintf(p.errOut, "skipped a message on %s that is not a pgrelay event: %.80q\n", source, payload)
				return skipped, nil
			}
			line = fmt.Appendf(nil, "%-8s %s %q\n", "?", source, payload)
		} else if p.actions != nil && !p.actions[e.Action] {
			return skipped, nil
		} else if p.pretty {
			line = appendPretty(nil, &e, p.color)
		}
	}
	if line == nil {
		line = append([]byte(payload), '\n')
	}
	if _, err := p.out.Write(line); err != nil {
		return limited, &outputError{err}
	}
	p.printed++
	if p.printed == p.limit {
		p.reached()
	}
	return printed, nil
}

// ANSI colours of the pretty format.
const (
	ansiReset = "\x1b[0m"
	ansiBold  = "\x1b[1m"
	ansiDim   = "\x1b[2m"
)

// actionColors are the colours of each action's name.
var actionColors = map[relay.Action]string{
	relay.ActionInsert:   "\x1b[1;32m", // bold green
	relay.ActionUpdate:   "\x1b[1;33m", // bold yellow
	relay.ActionDelete:   "\x1b[1;31m", // bold red
	relay.ActionTruncate: "\x1b[1;35m", // bold magenta
}

// Limits of the pretty format, in characters: one value, and a row's data
// summary before the remaining columns are only counted.
const (
	maxValueLen   = 40
	maxSummaryLen = 120
)

// appendPretty appends the readable line of e:
//
//	INSERT   public.users[7]  id=7 name="alice"
//	UPDATE   public.users[7]  name: "alice" → "bob"
//	DELETE   shop.items[tenant=1,id=2]  tenant=1 id=2 sku="x"
//	TRUNCATE public.users
//
// with the action coloured when color is set.
func appendPretty(b []byte, e *wireEvent, color bool) []byte {
	paint := func(style, s string) {
		if color {
			b = append(b, style...)
		}
		b = append(b, s...)
		if color {
			b = append(b, ansiReset...)
		}
	}
	paint(actionColors[e.Action], fmt.Sprintf("%-8s", strings.ToUpper(string(e.Action))))
	b = append(b, ' ')
	name := e.Schema + "." + e.Table
	if e.Schema == "" && e.Table == "" {
		name = e.Channel
	}
	paint(ansiBold, name)
	if key := keyText(e.Key); key != "" {
		b = append(b, "["+key+"]"...)
	}
	var details string
	switch {
	case e.Action == relay.ActionUpdate && len(e.Changes) > 0:
		parts := make([]string, len(e.Changes))
		for i, c := range e.Changes {
			parts[i] = c.Field + ": " + valueText(c.Old) + " → " + valueText(c.New)
		}
		details = strings.Join(parts, ", ")
	case e.Action != relay.ActionTruncate:
		details = summary(e.Data)
	}
	if details != "" {
		b = append(b, "  "...)
		if color && e.Action != relay.ActionUpdate {
			paint(ansiDim, details)
		} else {
			b = append(b, details...)
		}
	}
	return append(b, '\n')
}

// keyText shows a primary key: a one-column key as its value, a composite
// key (an object) as column=value pairs. It is empty for a missing key.
func keyText(key json.RawMessage) string {
	if len(key) == 0 || string(key) == "null" {
		return ""
	}
	if fields, ok := objectFields(key); ok {
		parts := make([]string, len(fields))
		for i, f := range fields {
			parts[i] = f.name + "=" + valueText(f.value)
		}
		return strings.Join(parts, ",")
	}
	return valueText(key)
}

// summary shows a row as column=value pairs in the row's order, up to about
// maxSummaryLen characters, then how many columns were left out.
func summary(data json.RawMessage) string {
	fields, ok := objectFields(data)
	if !ok {
		return valueText(data)
	}
	var sb strings.Builder
	for i, f := range fields {
		part := f.name + "=" + valueText(f.value)
		if i > 0 && utf8.RuneCountInString(sb.String())+1+utf8.RuneCountInString(part) > maxSummaryLen {
			fmt.Fprintf(&sb, " … (+%d more)", len(fields)-i)
			break
		}
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(part)
	}
	return sb.String()
}

// valueText shows one JSON value compactly, strings quoted as in JSON (so
// that control characters stay escaped), cut to maxValueLen characters.
func valueText(v json.RawMessage) string {
	if len(v) == 0 {
		return "null"
	}
	var buf bytes.Buffer
	s := string(v)
	if json.Compact(&buf, v) == nil {
		s = buf.String()
	}
	if utf8.RuneCountInString(s) > maxValueLen {
		runes := []rune(s)
		s = string(runes[:maxValueLen-1]) + "…"
	}
	return s
}

// field is one member of a JSON object.
type field struct {
	name  string
	value json.RawMessage
}

// objectFields returns the members of the JSON object v in their order
// (which a map would lose), or false when v is not an object.
func objectFields(v json.RawMessage) ([]field, bool) {
	dec := json.NewDecoder(bytes.NewReader(v))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	var fields []field
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		name, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, false
		}
		if strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			name = strconv.Quote(name)
		}
		fields = append(fields, field{name, value})
	}
	return fields, true
}
