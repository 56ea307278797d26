package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/relay"
)

func TestResolveNames(t *testing.T) {
	tests := []struct {
		args            []string
		names, patterns []string
	}{
		{nil, nil, nil},
		{[]string{"public.users"}, []string{"public.users.cdc_events"}, nil},
		{[]string{"users"}, []string{"public.users.cdc_events"}, nil},
		{[]string{" users ", ""}, []string{"public.users.cdc_events"}, nil},
		{[]string{"shop.orders.cdc_events"}, []string{"shop.orders.cdc_events"}, nil},
		{[]string{"shop.*"}, nil, []string{"shop.*.cdc_events"}},
		{[]string{"a.b", "*.cdc_events"}, []string{"a.b.cdc_events"}, []string{"*.cdc_events"}},
		{[]string{"users", "public.users", "public.users.cdc_events", "b"},
			[]string{"public.users.cdc_events", "public.b.cdc_events"}, nil},
	}
	for _, tt := range tests {
		names, patterns := resolveNames(tt.args)
		assert.Equal(t, tt.names, names, tt.args)
		assert.Equal(t, tt.patterns, patterns, tt.args)
	}
}

func TestParseActions(t *testing.T) {
	tests := []struct {
		values []string
		want   map[relay.Action]bool
		err    string
	}{
		{nil, nil, ""},
		{[]string{"insert"}, map[relay.Action]bool{relay.ActionInsert: true}, ""},
		{[]string{"insert", "update"}, map[relay.Action]bool{relay.ActionInsert: true, relay.ActionUpdate: true}, ""},
		{[]string{"Delete, truncate,"}, map[relay.Action]bool{relay.ActionDelete: true, relay.ActionTruncate: true}, ""},
		{[]string{"insert", "upsert"}, nil, `unknown action "upsert" in --actions: want insert, update, delete, truncate or message`},
		{[]string{" , "}, nil, "--actions names no action"},
	}
	for _, tt := range tests {
		got, err := parseActions(tt.values)
		if tt.err != "" {
			assert.ErrorContains(t, err, tt.err, tt.values)
			continue
		}
		assert.NoError(t, err, tt.values)
		assert.Equal(t, tt.want, got, tt.values)
	}
}

func TestStreamIDs(t *testing.T) {
	for id, valid := range map[string]bool{"$": true, "0": true, "0-0": true, "1700000000000-12": true,
		"1700000000000": true, "": false, ">": false, "-": false, "1-": false, "abc": false, "1-2-3": false} {
		assert.Equal(t, valid, validStreamID(id), id)
	}
	assert.True(t, idAfter("2-0", "1-9"))
	assert.True(t, idAfter("10-0", "9-0"), "numbers, not strings")
	assert.True(t, idAfter("1-10", "1-9"))
	assert.False(t, idAfter("1-1", "1-1"))
	assert.False(t, idAfter("0-5", "1-0"))
}

// TestCommandLineMistakes checks that each mistake is found before anything
// connects (the URL answers nothing) and named in the one error.
func TestCommandLineMistakes(t *testing.T) {
	tests := []struct {
		args []string
		err  string
	}{
		{[]string{"--actions", "insert,upsert", "users"}, `unknown action "upsert" in --actions`},
		{[]string{"--format", "xml"}, `unknown --format "xml": want json or pretty`},
		{[]string{"--group", "g", "users"}, "--group only applies with --stream"},
		{[]string{"--from", "0", "users"}, "--from only applies with --stream"},
		{[]string{"--stream", "--consumer", "c", "users"}, "--consumer only applies with --group"},
		{[]string{"--stream", "shop.*"}, "a stream cannot be read by pattern (shop.*.cdc_events)"},
		{[]string{"--stream"}, "--stream needs the tables or streams to read"},
		{[]string{"--stream", "--from", "later", "users"}, `--from "later": want 0`},
		{[]string{"--stream", "--pubsub", "classic", "users"}, "--pubsub applies to pub/sub"},
		{[]string{"--pubsub", "sharded", "shop.*"}, "sharded pub/sub has no patterns (shop.*.cdc_events)"},
		{[]string{"--pubsub", "sharded"}, "sharded pub/sub has no patterns (*.cdc_events)"},
		{[]string{"--cluster"}, "sharded pub/sub has no patterns (*.cdc_events): name each table, or add --pubsub classic"},
		{[]string{"--pubsub", "fast", "users"}, `unknown --pubsub "fast"`},
		{[]string{"--count", "-1", "users"}, "--count -1"},
		{[]string{"users", "--stream"}, "--stream after a name: flags go before the names"},
		{[]string{"--count", "many", "users"}, "invalid value \"many\" for flag -count"},
		{[]string{"--redis-url", "redis://h1:1?addr=h2:2", "users"}, "(more seed addresses need --cluster)"},
		{[]string{"--cluster", "--redis-url", "http://h1:1", "users"}, "invalid --redis-url http://h1:1 for a cluster"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		args := append([]string{"subscriber", "--redis-url", "redis://127.0.0.1:1"}, tt.args...)
		err := newApp(&stdout, &stderr).RunContext(context.Background(), args)
		assert.ErrorContains(t, err, tt.err, tt.args)
		assert.Empty(t, stdout.String(), tt.args)
	}
}

// TestMistakeIsOneLine checks what the user sees of a mistake: one line on
// stderr, exit status 1, no stack trace.
func TestMistakeIsOneLine(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--actions", "insert,upsert", "users"},
		{"--redis-url", "redis://:secret@127.0.0.1:1", "users"},
	} {
		cmd := exec.Command(subscriberBinary(t), args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		require.True(t, errors.As(err, &exit), "%v: %v", args, err)
		assert.Equal(t, 1, exit.ExitCode(), args)
		assert.Empty(t, stdout.String(), args)
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		assert.Len(t, lines, 1, "%v: %q", args, stderr.String())
		assert.True(t, strings.HasPrefix(lines[0], "subscriber: "), lines[0])
		assert.NotContains(t, stderr.String(), "secret")
	}
}
