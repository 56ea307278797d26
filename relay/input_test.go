package relay_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// ignoredNotification is what the relay logs for a foreign payload on its
// channel.

// TestRelayDeliversHugeTransaction: one statement, one transaction, 100,000
// rows, so a hundred default-sized batches cut inside one transaction.
func TestRelayDeliversHugeTransaction(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	c := newCollector()
	f.startRelay(t, relay.Config{}, c)

	const rows = 100_000
	f.exec(t, `INSERT INTO items SELECT g, 'x' FROM generate_series(1, $1::bigint) g`, rows)
	waitDistinct(t, ctx, c, rows)
	// Checked once the relay has nothing left to deliver, so that a repeat
	// arriving late is seen too.
	f.waitDelivered(t, ctx, "")
	events := c.snapshot()

	keys := make(map[string]bool, rows)
	for _, e := range events {
		if e.Txid != events[0].Txid || e.Action != relay.ActionInsert {
			t.Fatalf("event %d: %s in transaction %d, want inserts of transaction %d", e.ID, e.Action, e.Txid, events[0].Txid)
		}
		keys[string(e.Key)] = true
	}
	require.Len(t, keys, rows, "every row's key")
	require.True(t, keys["1"] && keys[fmt.Sprint(rows)])
	if c.connects.Load() == 1 {
		requireNoDuplicates(t, events) // without a reconnect, nothing is delivered twice
		require.Len(t, events, rows)
	}
}

// waitDistinct waits until c has received n distinct events (by ID). Unlike
// waitUntil it does not copy every event on every wake-up, which takes
// quadratic time for 100,000 events.
func waitDistinct(t *testing.T, ctx context.Context, c *collector, n int) []relay.Event {
	t.Helper()
	need := n
	for {
		c.mu.Lock()
		have := len(c.events)
		c.mu.Unlock()
		if have >= need {
			events := c.snapshot()
			seen := make(map[int64]bool, len(events))
			for _, e := range events {
				seen[e.ID] = true
			}
			if len(seen) == n {
				return events
			}
			need = len(events) + n - len(seen)
		}
		select {
		case <-c.changed:
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %d distinct events; have %d events", n, have)
		}
	}
}

// TestRelayDeliversLargeRow: a 5 MB row arrives whole, once, as the event
// and in the wire format.
func TestRelayDeliversLargeRow(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	c := newCollector()
	f.startRelay(t, relay.Config{}, c)

	// Random, so that a cut or shifted value cannot compare equal; base64,
	// so that it needs no JSON escaping and compresses badly.
	const size = 5 << 20
	b := make([]byte, size)
	_, err := rand.Read(b)
	require.NoError(t, err)
	value := base64.RawURLEncoding.EncodeToString(b)[:size]

	f.exec(t, `INSERT INTO items VALUES (1, $1), (2, 'small')`, value)
	events := f.waitExactly(t, ctx, c, 2)
	require.Len(t, events[0].Data, size+len(`{"id":1,"v":""}`))
	// Compared as strings, since a failure's diff would be 5 MB.
	require.True(t, string(events[0].Data) == `{"id":1,"v":"`+value+`"}`, "the 5 MB row arrives whole")
	require.Equal(t, `{"id":2,"v":"small"}`, string(events[1].Data))
	// And through the wire format.
	var wire struct {
		ID   json.RawMessage `json:"id"`
		Data struct {
			V string `json:"v"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(events[0].AppendJSON(nil), &wire))
	require.Equal(t, "1", string(wire.ID))
	require.True(t, wire.Data.V == value, "the 5 MB row is encoded whole")
}

// TestRelayIgnoresForeignNotifications sends notifications on the capture
// channel that pgrelay did not send: each is logged and ignored, without a
// reconnect, and delivery goes on.
func TestRelayIgnoresForeignNotifications(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	acts := newActivitySignal()
	c := newCollector()
	f.startRelay(t, relay.Config{Observer: acts.observe}, c)

	f.exec(t, `INSERT INTO items VALUES (1, 'before')`)
	c.waitCount(t, ctx, 1)

	tests := []struct{ name, sql string }{
		{"garbage", `NOTIFY cdc_events, 'garbage'`},
		{"sql", `SELECT pg_notify('cdc_events', 'x; DROP')`},
		{"empty", `NOTIFY cdc_events`},
		{"negative number", `SELECT pg_notify('cdc_events', '-1')`},
		{"decimal", `SELECT pg_notify('cdc_events', '1.5')`},
		{"too many digits", `SELECT pg_notify('cdc_events', repeat('9', 21))`},
		{"spaces", `SELECT pg_notify('cdc_events', ' 42 ')`},
		{"long unicode", `SELECT pg_notify('cdc_events', repeat('ü', 3999))`},
		{"control characters", `SELECT pg_notify('cdc_events', E'\n\r\t\x01\x1b[31m')`},
		{"json", `SELECT pg_notify('cdc_events', '{"txid": 1}')`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.exec(t, tt.sql)
			acts.wait(t, ctx, relay.ActivityForeignNotification)
		})
	}

	// Still the first connection, still delivering.
	f.exec(t, `INSERT INTO items VALUES (2, 'after')`)
	events := f.waitExactly(t, ctx, c, 2)
	require.Equal(t, "2", string(events[1].Key))
	require.EqualValues(t, 1, c.connects.Load(), "a foreign notification is no reason to reconnect")

	// A transaction id that is not one of ours only wakes the relay up.
	f.exec(t, `SELECT pg_notify('cdc_events', '12345')`)
	f.exec(t, `INSERT INTO items VALUES (3, 'last')`)
	f.waitExactly(t, ctx, c, 3)
	require.EqualValues(t, 1, c.connects.Load())
}

// ignoredNotification is the warning for a foreign notification, whose
// payload TestRelayLogsForeignPayloadsReadably checks.
const ignoredNotification = "ignoring a notification that pgrelay did not send"

// payloadLog records the payload attribute of the ignored-notification
// warnings.
type payloadLog struct{ payloads chan string }

func (l *payloadLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *payloadLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != ignoredNotification {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "payload" {
			select {
			case l.payloads <- a.Value.String():
			default:
			}
			return false
		}
		return true
	})
	return nil
}
func (l *payloadLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *payloadLog) WithGroup(string) slog.Handler      { return l }

// TestRelayLogsForeignPayloadsReadably: the payload in the warning is cut
// short, but must stay valid UTF-8.
func TestRelayLogsForeignPayloadsReadably(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	logs := &payloadLog{payloads: make(chan string, 10)}
	f.startRelay(t, relay.Config{Logger: slog.New(logs)}, newCollector())

	// 'a' then 2-byte characters: byte 64 is the middle of one.
	f.exec(t, `SELECT pg_notify('cdc_events', 'a' || repeat('é', 100))`)
	select {
	case p := <-logs.payloads:
		require.True(t, utf8.ValidString(p), "logged payload %q is not valid UTF-8", p)
		require.True(t, strings.HasPrefix(p, "aé"))
	case <-ctx.Done():
		t.Fatal("the foreign notification was not logged")
	}
}

// TestRelayDeliversEventsOfDroppedTable: the table was dropped while no
// relay ran; its events are in the outbox and are delivered all the same.
func TestRelayDeliversEventsOfDroppedTable(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	f := newFixture(t)
	f.exec(t, `CREATE TABLE doomed (id int PRIMARY KEY, v text)`)
	_, err := sqlkit.EnsureCDCFor(ctx, f.pool, sqlkit.Table{Name: "doomed"})
	require.NoError(t, err)

	first := newCollector()
	r := f.startRelay(t, relay.Config{}, first)
	f.exec(t, `INSERT INTO doomed VALUES (1, 'seen')`)
	first.waitCount(t, ctx, 1)
	require.NoError(t, r.Close(ctx))

	f.exec(t, `INSERT INTO doomed VALUES (2, 'a'), (3, 'b')`)
	f.exec(t, `UPDATE doomed SET v = 'c' WHERE id = 3`)
	f.exec(t, `DELETE FROM doomed WHERE id = 1`)
	f.exec(t, `DROP TABLE doomed`)
	f.exec(t, `INSERT INTO items VALUES (1, 'after the drop')`)

	second := newCollector()
	f.startRelay(t, relay.Config{}, second)
	events := f.waitExactly(t, ctx, second, 5)
	type short struct {
		Table  string
		Action relay.Action
		Key    string
	}
	var got []short
	for _, e := range events {
		got = append(got, short{e.Table, e.Action, string(e.Key)})
	}
	require.Equal(t, []short{
		{"doomed", relay.ActionInsert, "2"},
		{"doomed", relay.ActionInsert, "3"},
		{"doomed", relay.ActionUpdate, "3"},
		{"doomed", relay.ActionDelete, "1"},
		{"items", relay.ActionInsert, "1"},
	}, got)
	require.Equal(t, `{"id":3,"v":"c"}`, string(events[2].Data))
	require.Equal(t, `[{"field":"v","old":"b","new":"c"}]`, string(events[2].Changes))
}
