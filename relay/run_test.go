package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

// TestRunStoppedWhileStarting: a Run whose context ends before it has
// connected, or while it connects, is a shutdown like any other and
// returns nil; a handler it started is closed.
func TestRunStoppedWhileStarting(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, after := range []time.Duration{0, time.Millisecond, 3 * time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond} {
		t.Run(after.String(), func(t *testing.T) {
			c := newCollector()
			r, err := relay.New(relay.Config{DatabaseURL: f.url, Name: testenv.UniqueName("early_")}, c)
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(testenv.Context(t))
			if after == 0 {
				cancel()
			} else {
				time.AfterFunc(after, cancel)
			}
			require.NoError(t, r.Run(ctx))
			cancel()
			require.NoError(t, r.Close(context.Background()), "closing again")
			require.Equal(t, c.starts.Load(), c.closes.Load(), "OnClose once for each OnStart")
		})
	}
}
