package relay_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/relay"
)

func TestEventJSON(t *testing.T) {
	e := relay.Event{
		ID:        42,
		Txid:      7781,
		Timestamp: time.Date(2026, 11, 22, 11, 1, 2, 123456789, time.FixedZone("CET", 3600)),
		Schema:    "public",
		Table:     "users",
		Action:    relay.ActionUpdate,
		Key:       json.RawMessage(`7`),
		Data:      json.RawMessage(`{"id": 7, "name": "b"}`),
		Changes:   json.RawMessage(`[{"field": "name", "old": "a", "new": "b"}]`),
	}
	b, err := json.Marshal(&e)
	require.NoError(t, err)
	require.JSONEq(t, `{"event_id":42,"txid":7781,"timestamp":"2026-11-22T10:01:02.123456Z","schema":"public","table":"users","action":"update","id":7,"data":{"id":7,"name":"b"},"changes":[{"field":"name","old":"a","new":"b"}]}`, string(b))
	require.Contains(t, string(b), `"timestamp":"2026-11-22T10:01:02.123456Z"`)

	e.Action, e.Changes = relay.ActionInsert, nil
	b, err = json.Marshal(&e)
	require.NoError(t, err)
	require.NotContains(t, string(b), "changes", "changes only for updates")

	truncate := relay.Event{ID: 1, Txid: 2, Schema: "s", Table: "t", Action: relay.ActionTruncate}
	b, err = json.Marshal(&truncate)
	require.NoError(t, err)
	require.Contains(t, string(b), `"id":null,"data":null}`)

	msg := relay.Event{ID: 43, Txid: 7781, Timestamp: e.Timestamp, Action: relay.ActionMessage,
		CustomChannel: "orders.shipped", Data: json.RawMessage(`{"order_id": 42}`)}
	b, err = json.Marshal(&msg)
	require.NoError(t, err)
	require.Equal(t, `{"event_id":43,"txid":7781,"timestamp":"2026-11-22T10:01:02.123456Z","action":"message","channel":"orders.shipped","data":{"order_id":42}}`, string(b))
	require.Equal(t, "orders.shipped", msg.Channel(), "published verbatim on its channel")
}

// FuzzEventJSONNames checks that any schema and table name, including
// invalid UTF-8 and control characters, encodes to valid JSON that decodes
// back to the name (with invalid bytes replaced, as encoding/json does).
func FuzzEventJSONNames(f *testing.F) {
	for _, s := range []string{"users", `My "Table"`, "tab\tle\n", "ünï\u2028", "\xff\xfe", "\x00"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, schema, table string) {
		e := relay.Event{Schema: schema, Table: table, Action: relay.ActionInsert, Key: json.RawMessage(`1`), Data: json.RawMessage(`{}`)}
		b := e.AppendJSON(nil)
		var got struct{ Schema, Table string }
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("invalid JSON %q: %v", b, err)
		}
		want, _ := json.Marshal(struct{ Schema, Table string }{schema, table})
		var exp struct{ Schema, Table string }
		_ = json.Unmarshal(want, &exp)
		if got != exp {
			t.Fatalf("got %q, want %q", got, exp)
		}
	})
}

func TestEventJSONIsCompact(t *testing.T) {
	e := relay.Event{
		ID: 1, Action: relay.ActionUpdate,
		Key:     json.RawMessage(`{"a": 1, "b": "x"}`),
		Data:    json.RawMessage(`{"s": "keep  these: spaces, \" and \\\\", "n": [1, 2]}`),
		Changes: json.RawMessage(`[{"field" : "s", "old" : "a b", "new" : "c"}]`),
	}
	got := string(e.AppendJSON(nil))
	require.Contains(t, got, `"id":{"a":1,"b":"x"},"data":{"s":"keep  these: spaces, \" and \\\\","n":[1,2]},"changes":[{"field":"s","old":"a b","new":"c"}]}`)
	require.True(t, json.Valid([]byte(got)))
}

// FuzzAppendRawCompacts checks that compacting PostgreSQL's JSON never
// changes its meaning.
func FuzzAppendRawCompacts(f *testing.F) {
	for _, s := range []string{`{"a": 1}`, `[1, "x y", {"q": "\" , :"}]`, `"\\"`, `{"s": "a\\"b c"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if !json.Valid([]byte(raw)) {
			return
		}
		e := relay.Event{Data: json.RawMessage(raw)}
		var got struct{ Data any }
		if err := json.Unmarshal(e.AppendJSON(nil), &got); err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		var want any
		_ = json.Unmarshal([]byte(raw), &want)
		require.Equal(t, want, got.Data)
	})
}

// FuzzAppendTimestamp: the hand-written timestamp is what AppendFormat
// writes, for any instant and zone.
func FuzzAppendTimestamp(f *testing.F) {
	f.Add(int64(0), int64(0), 0)
	f.Add(int64(1796000000), int64(123456789), 3600)
	f.Add(int64(-62135596800), int64(999999999), -7200)
	f.Add(int64(253402300799), int64(1), 0)
	f.Fuzz(func(t *testing.T, sec, nsec int64, offset int) {
		ts := time.Unix(sec, nsec).In(time.FixedZone("z", offset%86400))
		want := ts.UTC().AppendFormat(nil, "2006-01-02T15:04:05.000000Z")
		got := relay.AppendTimestampForTest(nil, ts)
		if string(got) != string(want) {
			t.Fatalf("%v: got %s, want %s", ts, got, want)
		}
	})
}
