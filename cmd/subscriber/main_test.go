package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
)

func TestChannels(t *testing.T) {
	tests := []struct {
		args            []string
		chans, patterns []string
	}{
		{nil, nil, []string{"*.cdc_events"}},
		{[]string{"public.users"}, []string{"public.users.cdc_events"}, nil},
		{[]string{"users"}, []string{"public.users.cdc_events"}, nil},
		{[]string{"shop.orders.cdc_events"}, []string{"shop.orders.cdc_events"}, nil},
		{[]string{"shop.*"}, nil, []string{"shop.*.cdc_events"}},
		{[]string{"a.b", "*.cdc_events"}, []string{"a.b.cdc_events"}, []string{"*.cdc_events"}},
	}
	for _, tt := range tests {
		chans, patterns := channels(tt.args)
		require.Equal(t, tt.chans, chans, tt.args)
		require.Equal(t, tt.patterns, patterns, tt.args)
	}
}

// lockedBuffer lets the test read what the subscriber writes concurrently.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	got chan struct{}
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer func() {
		select {
		case b.got <- struct{}{}:
		default:
		}
	}()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestSubscriberPrintsEachMessageAsALine(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	rdb := testenv.Redis(t)
	table := testenv.UniqueName("sub_")
	out := &lockedBuffer{got: make(chan struct{}, 1)}
	var errOut lockedBuffer
	errOut.got = make(chan struct{}, 1)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- newApp(out, &errOut).RunContext(runCtx, []string{"subscriber", "--redis-url", testenv.RedisURL(), "public." + table})
	}()
	waitFor := func(b *lockedBuffer, s string) {
		for !strings.Contains(b.String(), s) {
			select {
			case <-b.got:
			case <-ctx.Done():
				t.Fatalf("never saw %q", s)
			}
		}
	}
	waitFor(&errOut, "subscribed to public."+table+".cdc_events")
	for _, m := range []string{`{"n":1}`, `{"n":2}`} {
		require.NoError(t, rdb.Publish(ctx, "public."+table+".cdc_events", m).Err())
	}
	waitFor(out, `{"n":2}`)
	stop()
	require.NoError(t, <-done)
	require.Equal(t, "{\"n\":1}\n{\"n\":2}\n", out.String())

	err := newApp(out, &errOut).Run([]string{"subscriber", "--redis-url", "redis://:secret@127.0.0.1:1"})
	require.ErrorContains(t, err, "connect to redis redis://:xxxxx@127.0.0.1:1")
}
