package relay_test

import (
	"testing"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	redissink "github.com/pgrelay/pgrelay/handlers/redis"
)

// redisSink is the Redis handler on rdb with its default configuration.
func redisSink(t testing.TB, rdb goredis.UniversalClient) *redissink.Handler {
	t.Helper()
	h, err := redissink.New(redissink.Config{Client: rdb})
	require.NoError(t, err)
	return h
}
