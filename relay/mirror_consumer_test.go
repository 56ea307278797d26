package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// tpcbKeys are the primary-key columns of pgbench's tables.
var tpcbKeys = map[string]string{
	"pgbench_branches": "bid",
	"pgbench_tellers":  "tid",
	"pgbench_accounts": "aid",
	"pgbench_history":  "hid",
}

type mirrorTable struct{ Schema, Name string }

func (t mirrorTable) String() string { return t.Schema + "." + t.Name }

// mirror is a consumer's copy of the tables, built from events applied in
// the order they arrive; rows are decoded JSON objects, keyed by their key's
// canonical JSON.
type mirror struct {
	rows map[mirrorTable]map[string]map[string]any
	// named holds every key an event named: a key named and not in rows
	// was deleted.
	named      map[mirrorTable]map[string]bool
	applied    map[int64]bool
	txids      map[uint64]bool
	received   int
	duplicates int
	dupMin     int64
	dupMax     int64
	violations []string
}

func newMirror() *mirror {
	return &mirror{
		rows:    map[mirrorTable]map[string]map[string]any{},
		named:   map[mirrorTable]map[string]bool{},
		applied: map[int64]bool{},
		txids:   map[uint64]bool{},
	}
}

// mirrorEvent is the wire format, as the consumer reads it.
type mirrorEvent struct {
	ID      int64           `json:"event_id"`
	Txid    uint64          `json:"txid"`
	Schema  string          `json:"schema"`
	Table   string          `json:"table"`
	Action  string          `json:"action"`
	Key     json.RawMessage `json:"id"`
	Data    json.RawMessage `json:"data"`
	Changes []struct {
		Field string          `json:"field"`
		Old   json.RawMessage `json:"old"`
	} `json:"changes"`
}

// apply applies one event line, once per event id, checking that it follows
// from what the mirror holds.
func (m *mirror) apply(t *testing.T, line []byte) {
	var e mirrorEvent
	require.NoError(t, json.Unmarshal(line, &e), "event %s", line)
	m.received++
	if m.applied[e.ID] {
		if m.duplicates == 0 || e.ID < m.dupMin {
			m.dupMin = e.ID
		}
		m.dupMax = max(m.dupMax, e.ID)
		m.duplicates++
		return
	}
	m.applied[e.ID] = true
	m.txids[e.Txid] = true

	table := mirrorTable{e.Schema, e.Table}
	if m.rows[table] == nil {
		m.rows[table], m.named[table] = map[string]map[string]any{}, map[string]bool{}
	}
	rows, named := m.rows[table], m.named[table]
	if e.Action == "truncate" {
		for k := range rows {
			named[k] = true
		}
		clear(rows)
		return
	}
	key := canonicalJSON(t, e.Key)
	row, held := rows[key]
	seen := named[key]
	named[key] = true
	problem := func(format string, args ...any) {
		m.violations = append(m.violations, fmt.Sprintf("%s key %s, event %d (%s, txid %d): %s",
			table, key, e.ID, e.Action, e.Txid, fmt.Sprintf(format, args...)))
	}
	switch e.Action {
	case "insert":
		if held {
			problem("the row is already there: %s", encodeJSON(t, row))
		}
	case "update":
		if held {
			for _, c := range e.Changes {
				if old := decodeJSON(t, c.Old); !reflect.DeepEqual(old, row[c.Field]) {
					problem("%s: old value %s, the mirror holds %s", c.Field, encodeJSON(t, old), encodeJSON(t, row[c.Field]))
				}
			}
		} else if seen {
			problem("updates a deleted row")
		}
	case "delete":
		if !held && seen {
			problem("deletes a row already deleted")
		}
		delete(rows, key)
		return
	default:
		t.Fatalf("unknown action in %s", line)
	}
	data, ok := decodeJSON(t, e.Data).(map[string]any)
	require.True(t, ok, "data is an object: %s", line)
	rows[key] = data
}

// compare checks every row an event named against the database, and returns
// what differs.
func (m *mirror) compare(t *testing.T, ctx context.Context, pool *pgxpool.Pool) []string {
	var diffs []string
	for table, named := range m.named {
		col, ok := tpcbKeys[table.Name]
		require.True(t, ok, "events of an unexpected table %s", table)
		keys := make([]json.RawMessage, 0, len(named))
		for k := range named {
			keys = append(keys, json.RawMessage(k))
		}
		// The named rows only (jsonb compares keys as values), as JSON.
		rows, err := pool.Query(ctx, fmt.Sprintf(`SELECT (to_json(t) -> $1::text)::text, to_json(t)::text FROM %s t
			WHERE to_jsonb(t) -> $1::text IN (SELECT jsonb_array_elements($2::jsonb))`,
			pgx.Identifier{table.Schema, table.Name}.Sanitize()), col, encodeJSON(t, keys))
		require.NoError(t, err)
		db := map[string]map[string]any{}
		for rows.Next() {
			var key, row []byte
			require.NoError(t, rows.Scan(&key, &row))
			db[canonicalJSON(t, key)] = decodeJSON(t, row).(map[string]any)
		}
		require.NoError(t, rows.Err())
		for key := range named {
			want, inDB := db[key]
			got, held := m.rows[table][key]
			switch {
			case held && !inDB:
				diffs = append(diffs, fmt.Sprintf("%s key %s: the mirror holds %s, the database has no such row", table, key, encodeJSON(t, got)))
			case !held && inDB:
				diffs = append(diffs, fmt.Sprintf("%s key %s: the mirror deleted it, the database has %s", table, key, encodeJSON(t, want)))
			case held && !reflect.DeepEqual(got, want):
				diffs = append(diffs, fmt.Sprintf("%s key %s: the mirror holds %s, the database %s", table, key, encodeJSON(t, got), encodeJSON(t, want)))
			}
		}
	}
	slices.Sort(diffs)
	return diffs
}

// duplicateRange describes the ids received more than once.
func (m *mirror) duplicateRange() string {
	if m.duplicates == 0 {
		return ""
	}
	return fmt.Sprintf(" (ids %d to %d)", m.dupMin, m.dupMax)
}

// decodeJSON decodes JSON keeping numbers exact, for comparing values
// rather than their text.
func decodeJSON(t *testing.T, raw []byte) any {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	require.NoError(t, d.Decode(&v), "JSON %s", raw)
	return v
}

func encodeJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// canonicalJSON re-encodes JSON with sorted object keys and no spaces.
func canonicalJSON(t *testing.T, raw []byte) string {
	return encodeJSON(t, decodeJSON(t, raw))
}
