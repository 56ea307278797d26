package relay

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/pgrelay/pgrelay/route"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// Action is the kind of change an Event reports.
type Action string

// The actions the capture trigger records.
const (
	ActionInsert   Action = "insert"
	ActionUpdate   Action = "update"
	ActionDelete   Action = "delete"
	ActionTruncate Action = "truncate"
	// ActionMessage is a custom event an application published with
	// cdc.publish (or sqlkit.Publish) in its transaction.
	ActionMessage Action = sqlkit.ActionMessage
)

// Event is one captured row change, or one custom event (ActionMessage).
type Event struct {
	// ID is the event's outbox id: unique, and increasing within a
	// transaction. Across transactions ids do not give the order:
	// transactions are delivered in commit order (see the README's
	// Guarantees), and one delivered later may have smaller ids.
	ID int64
	// Txid is the id of the transaction that made the change; consumers
	// can group a transaction's events by it.
	Txid uint64
	// Timestamp is when the change was made (clock_timestamp()), in UTC.
	Timestamp time.Time
	// Schema and Table name the changed table as they are (unquoted).
	// A partition's changes carry the partitioned table's name. Empty for
	// ActionMessage.
	Schema, Table string
	Action        Action
	// Key is the primary-key value as JSON: the value itself for a
	// one-column key, an object of column to value for a composite key.
	// Null for truncate.
	Key json.RawMessage
	// Data is the row as a JSON object: the new row for insert and update,
	// the old row for delete. Null for truncate. For ActionMessage, the
	// published payload.
	Data json.RawMessage
	// Changes lists, for updates only, the changed columns as a JSON array
	// of {"field", "old", "new"} objects. Nil otherwise.
	Changes json.RawMessage
	// CustomChannel is, for ActionMessage only, the channel the event was
	// published on.
	CustomChannel string
}

// Channel returns the event's default destination (Redis channel and
// stream): "<schema>.<table>.cdc_events" (see route.Channel), or for a
// custom event the channel it was published on, verbatim.
func (e *Event) Channel() string {
	if e.Action == ActionMessage {
		return e.CustomChannel
	}
	return route.Channel(e.Schema, e.Table)
}

// timestampLayout is RFC 3339 in UTC with exactly microseconds, PostgreSQL's
// own precision.
const timestampLayout = "2006-01-02T15:04:05.000000Z"

// appendTimestamp appends t in timestampLayout: by hand, since
// time.Time.AppendFormat was a sixth of the relay's CPU while draining. Years
// outside 0000-9999 fall back to AppendFormat.
func appendTimestamp(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, timestampLayout)
	}
	hour, minute, sec := t.Clock()
	us := t.Nanosecond() / 1000
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, us, 6)
	return append(b, 'Z')
}

// appendDigits appends v (non-negative) as exactly n decimal digits.
func appendDigits(b []byte, v, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		b = append(b, 0)
	}
	for i := len(b) - 1; i >= len(b)-n; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return b
}

// MarshalJSON encodes the event as pgrelay's wire format, for example
//
//	{"event_id":42,"txid":7781,"timestamp":"2026-11-22T10:01:02.123456Z","schema":"public","table":"users","action":"update","id":7,"data":{"id":7,"name":"b"},"changes":[{"field":"name","old":"a","new":"b"}]}
//
// "changes" is present only for updates. A custom event has "channel" and
// "data" instead of "schema", "table", "id" and "data":
//
//	{"event_id":43,"txid":7781,"timestamp":"2026-11-22T10:01:02.123456Z","action":"message","channel":"orders.shipped","data":{"order_id":42}}
func (e *Event) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 128+len(e.Data)+len(e.Changes))), nil
}

// AppendJSON appends the MarshalJSON encoding of e to b, without
// reflection, for the hot path.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"event_id":`...)
	b = strconv.AppendInt(b, e.ID, 10)
	b = append(b, `,"txid":`...)
	b = strconv.AppendUint(b, e.Txid, 10)
	b = append(b, `,"timestamp":"`...)
	b = appendTimestamp(b, e.Timestamp)
	if e.Action == ActionMessage {
		b = append(b, `","action":"message","channel":`...)
		b = appendJSONString(b, e.CustomChannel)
		b = append(b, `,"data":`...)
		b = appendRaw(b, e.Data)
		return append(b, '}')
	}
	b = append(b, `","schema":`...)
	b = appendJSONString(b, e.Schema)
	b = append(b, `,"table":`...)
	b = appendJSONString(b, e.Table)
	b = append(b, `,"action":`...)
	b = appendJSONString(b, string(e.Action))
	b = append(b, `,"id":`...)
	b = appendRaw(b, e.Key)
	b = append(b, `,"data":`...)
	b = appendRaw(b, e.Data)
	if e.Action == ActionUpdate && len(e.Changes) > 0 {
		b = append(b, `,"changes":`...)
		b = appendRaw(b, e.Changes)
	}
	return append(b, '}')
}

// appendRaw appends a JSON value produced by PostgreSQL, or null, without
// the spaces PostgreSQL's jsonb output puts after colons and commas, so that
// the wire format is compact whatever the column type.
func appendRaw(b []byte, v json.RawMessage) []byte {
	if len(v) == 0 {
		return append(b, "null"...)
	}
	inString := false
	start := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case inString:
			if c == '\\' {
				i++ // skip the escaped byte, which may be a quote
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\n' || c == '\t' || c == '\r':
			b = append(b, v[start:i]...)
			start = i + 1
		}
	}
	return append(b, v[start:]...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// as encoding/json does; U+2028 and U+2029 are escaped so the output is also
// valid JavaScript.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
