package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/relay"
)

func TestPrettyLines(t *testing.T) {
	long := strings.Repeat("x", 60)
	tests := []struct {
		name, event, want string
	}{
		{"insert",
			`{"event_id":1,"txid":7,"timestamp":"2026-11-22T10:01:02.000000Z","schema":"public","table":"users","action":"insert","id":7,"data":{"id":7,"name":"alice","tags":["a", "b"]}}`,
			`INSERT   public.users[7]  id=7 name="alice" tags=["a","b"]`},
		{"update",
			`{"event_id":2,"txid":7,"timestamp":"2026-11-22T10:01:02.000000Z","schema":"public","table":"users","action":"update","id":7,"data":{"id":7,"name":"bob","age":4},"changes":[{"field":"name","old":"alice","new":"bob"},{"field":"age","old":null,"new":4}]}`,
			`UPDATE   public.users[7]  name: "alice" → "bob", age: null → 4`},
		{"delete with a composite key",
			`{"event_id":3,"txid":8,"timestamp":"2026-11-22T10:01:02.000000Z","schema":"shop","table":"items","action":"delete","id":{"tenant":1,"id":"a\nb"},"data":{"tenant":1,"id":"a\nb","sku":"` + long + `"}}`,
			`DELETE   shop.items[tenant=1,id="a\nb"]  tenant=1 id="a\nb" sku="` + strings.Repeat("x", 38) + `…`},
		{"truncate",
			`{"event_id":4,"txid":9,"timestamp":"2026-11-22T10:01:02.000000Z","schema":"public","table":"users","action":"truncate","id":null,"data":null}`,
			`TRUNCATE public.users`},
		{"an action of no table",
			`{"event_id":5,"txid":9,"timestamp":"2026-11-22T10:01:02.000000Z","action":"message","channel":"orders.shipped","data":{"order_id":42}}`,
			`MESSAGE  orders.shipped  order_id=42`},
	}
	for _, tt := range tests {
		var e wireEvent
		require.NoError(t, json.Unmarshal([]byte(tt.event), &e), tt.name)
		assert.Equal(t, tt.want+"\n", string(appendPretty(nil, &e, false)), tt.name)
	}
}

func TestPrettyColours(t *testing.T) {
	var e wireEvent
	require.NoError(t, json.Unmarshal([]byte(event("users", relay.ActionDelete, 3)), &e))
	assert.Equal(t, "\x1b[1;31mDELETE  \x1b[0m \x1b[1mpublic.users\x1b[0m[3]  \x1b[2mid=3 name=\"n3\"\x1b[0m\n",
		string(appendPretty(nil, &e, true)))
}

func TestPrettySummaryIsShort(t *testing.T) {
	var cols []string
	for i := range 30 {
		cols = append(cols, `"column_`+strings.Repeat("c", i%3)+`":12345`)
	}
	got := summary(json.RawMessage("{" + strings.Join(cols, ",") + "}"))
	assert.LessOrEqual(t, len([]rune(got)), maxSummaryLen+20, got)
	assert.Regexp(t, `… \(\+\d+ more\)$`, got)
}

func TestPrinterFiltersAndCounts(t *testing.T) {
	var out, errOut bytes.Buffer
	reached := 0
	cfg := &config{count: 2, actions: map[relay.Action]bool{relay.ActionInsert: true, relay.ActionDelete: true}}
	p := newPrinter(cfg, &out, &errOut, func() { reached++ })
	for _, step := range []struct {
		payload string
		want    outcome
	}{
		{event("t", relay.ActionUpdate, 1), skipped},
		{"not json", skipped},
		{event("t", relay.ActionInsert, 2), printed},
		{event("t", relay.ActionDelete, 3), printed},
		{event("t", relay.ActionInsert, 4), limited},
	} {
		got, err := p.emit("public.t.cdc_events", step.payload)
		require.NoError(t, err)
		assert.Equal(t, step.want, got, step.payload)
	}
	assert.Equal(t, 1, reached)
	assert.Equal(t, event("t", relay.ActionInsert, 2)+"\n"+event("t", relay.ActionDelete, 3)+"\n", out.String())
	assert.Equal(t, "skipped a message on public.t.cdc_events that is not a pgrelay event: \"not json\"\n", errOut.String())
}

func TestPrinterPassesAnythingThroughWithoutFilter(t *testing.T) {
	var out bytes.Buffer
	p := newPrinter(&config{}, &out, &out, nil)
	for _, payload := range []string{`{"n":1}`, "plain text", event("t", relay.ActionInsert, 1)} {
		got, err := p.emit("c", payload)
		require.NoError(t, err)
		assert.Equal(t, printed, got)
	}
	assert.Equal(t, `{"n":1}`+"\nplain text\n"+event("t", relay.ActionInsert, 1)+"\n", out.String())

	out.Reset()
	p = newPrinter(&config{pretty: true}, &out, &out, nil)
	_, err := p.emit("c", "plain\x1btext")
	require.NoError(t, err)
	assert.Equal(t, "?        c \"plain\\x1btext\"\n", out.String(), "no terminal escapes from a stray message")
}
