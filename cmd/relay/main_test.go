package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

// runCLI runs the relay command in-process and returns its output and the
// one line main would print on error.
func runCLI(ctx context.Context, args ...string) (stdout, errLine string, err error) {
	var out, logs bytes.Buffer
	app := newApp(&out, &logs)
	err = app.RunContext(ctx, hoistGlobalFlags(app, append([]string{"relay", "--log-format", "json"}, args...)))
	if err != nil {
		errLine = oneLine(err.Error())
	}
	return out.String(), errLine, err
}

// The CLI tests do not run in parallel: urfave/cli's help flag is a package
// variable that each run writes.

func TestCLIBadInput(t *testing.T) {
	ctx := testenv.Context(t)
	bareURL := testenv.NewDatabase(t) // never migrated
	dbURL := testenv.NewDatabase(t)
	pool := testenv.Pool(t, dbURL)
	_, err := pool.Exec(ctx, `CREATE TABLE nopk (x int); CREATE VIEW v AS SELECT 1 AS x; CREATE TABLE ok (id int PRIMARY KEY)`)
	require.NoError(t, err)

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no tables", []string{"--database-url", dbURL, "ensure-cdc"}, "name at least one table"},
		{"missing table", []string{"--database-url", dbURL, "ensure-cdc", "ok", "nope"}, "table nope does not exist"},
		{"no primary key", []string{"--database-url", dbURL, "ensure-cdc", "ok", "nopk"}, "table public.nopk has no primary key"},
		{"view", []string{"--database-url", dbURL, "ensure-cdc", "v"}, "public.v is a view"},
		{"sql in name", []string{"--database-url", dbURL, "ensure-cdc", "x; DROP TABLE ok"}, "invalid table name"},
		{"quoted sql in name", []string{"--database-url", dbURL, "ensure-cdc", `"x; DROP TABLE ok"`}, `table "x; DROP TABLE ok" does not exist`},
		{"malformed url", []string{"--database-url", "postgres://u:secret@host:port/db", "status"}, "invalid --database-url"},
		{"unreachable database", []string{"--database-url", "postgres://u:secret@127.0.0.1:1/db", "status"}, "connect to postgres://u:xxxxx@127.0.0.1:1/db"},
		{"missing database", []string{"--database-url", testenv.WithDatabase(testenv.AdminURL(), "pgrelay_no_such_db"), "status"}, `database "pgrelay_no_such_db" does not exist`},
		{"not migrated", []string{"--database-url", bareURL, "status"}, "run `relay migrate`"},
		{"run not migrated", []string{"--database-url", bareURL, "run"}, "run `relay migrate`"},
		{"malformed redis url", []string{"--database-url", dbURL, "--redis-url", "http://:secret@x", "run"}, "invalid --redis-url"},
		{"unreachable redis", []string{"--database-url", dbURL, "--redis-url", "redis://:secret@127.0.0.1:1", "run"}, "connect to redis redis://:xxxxx@127.0.0.1:1"},
		{"bad flag", []string{"status", "--frobnicate"}, "flag provided but not defined"},
		{"bad log level", []string{"--log-level", "loud", "status"}, `invalid log level "loud"`},
		{"bad log level after the command", []string{"status", "--log-level=loud"}, `invalid log level "loud"`},
		{"global flag after the command", []string{"status", "--database-url", bareURL}, "run `relay migrate`"},
		{"bad batch size", []string{"--database-url", dbURL, "run", "--batch-size", "-5"}, "--batch-size must be between"},
		{"bad redis mode", []string{"--database-url", dbURL, "--redis-url", testenv.RedisURL(), "run", "--redis-mode", "queue"}, `invalid --redis-mode: redis mode "queue" is not one of pubsub, stream, both`},
		{"bad redis pubsub", []string{"--database-url", dbURL, "--redis-url", testenv.RedisURL(), "run", "--redis-pubsub", "loud"}, `invalid --redis-pubsub`},
		{"negative stream maxlen", []string{"--database-url", dbURL, "--redis-url", testenv.RedisURL(), "run", "--redis-mode", "stream", "--stream-maxlen", "-1"}, "invalid --stream-maxlen -1"},
		{"stream without redis", []string{"--database-url", dbURL, "run", "--redis-mode", "stream"}, "--redis-mode needs --redis-url"},
		{"cluster without redis", []string{"--database-url", dbURL, "--redis-cluster", "run"}, "--redis-cluster needs --redis-url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, line, err := runCLI(ctx, tt.args...)
			require.Error(t, err)
			require.Contains(t, line, tt.want)
			require.NotContains(t, line, "secret")
			require.NotContains(t, line, "\n")
		})
	}
	// Nothing was half done: no table got CDC.
	out, _, err := runCLI(ctx, "--database-url", dbURL, "status", "--json")
	require.NoError(t, err)
	var st relay.Status
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.Empty(t, st.Tables)
}

func TestCLIEnsureRunStatus(t *testing.T) {
	ctx := testenv.Context(t)
	dbURL := testenv.NewDatabase(t)
	pool := testenv.Pool(t, dbURL)
	table := testenv.UniqueName("orders_")
	_, err := pool.Exec(ctx, `CREATE SCHEMA shop; CREATE TABLE shop.`+table+` (id int PRIMARY KEY, total numeric)`)
	require.NoError(t, err)

	out, _, err := runCLI(ctx, "--database-url", dbURL, "ensure-cdc", "--schema", "shop", "--all-tables")
	require.NoError(t, err)
	require.Equal(t, "shop."+table+": installed\n", out)
	out, _, err = runCLI(ctx, "--database-url", dbURL, "ensure-cdc", "shop."+table)
	require.NoError(t, err)
	require.Equal(t, "shop."+table+": unchanged\n", out)

	_, err = pool.Exec(ctx, `INSERT INTO shop.`+table+` VALUES (1, 9.99), (2, 0.01)`)
	require.NoError(t, err)
	out, _, err = runCLI(ctx, "--database-url", dbURL, "status", "--json")
	require.NoError(t, err)
	var st relay.Status
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.Len(t, st.Tables, 1)
	require.Equal(t, "shop."+table, st.Tables[0].Name())
	require.True(t, st.Tables[0].Captured)
	require.EqualValues(t, 2, st.Tables[0].Pending)
	require.EqualValues(t, 2, st.Pending)
	require.NotNil(t, st.OldestPending)

	// relay run publishes the backlog to Redis.
	rdb := testenv.Redis(t)
	sub := rdb.Subscribe(ctx, "shop."+table+".cdc_events")
	defer sub.Close()
	_, err = sub.Receive(ctx)
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, _, err := runCLI(runCtx, "--database-url", dbURL, "--redis-url", testenv.RedisURL(), "run", "--log-events")
		done <- err
	}()
	for i := range 2 {
		msg, err := sub.ReceiveMessage(ctx)
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(msg.Payload, `{"event_id":`), msg.Payload)
		require.Contains(t, msg.Payload, `"action":"insert"`, i)
	}
	// status names the active relay while it runs, and none once it
	// stopped (it gave up its lease and registration).
	out, _, err = runCLI(ctx, "--database-url", dbURL, "status", "--json")
	require.NoError(t, err)
	st = relay.Status{}
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.Len(t, st.Relays, 1)
	require.True(t, st.Relays[0].Active)
	require.Equal(t, os.Getpid(), st.Relays[0].PID, "relay run runs in this process")
	require.NotNil(t, st.Relays[0].RenewedAt)
	out, _, err = runCLI(ctx, "--database-url", dbURL, "status")
	require.NoError(t, err)
	require.Contains(t, out, "relays (default): 1 running\n  active ")
	stop()
	require.NoError(t, <-done, "a signal ends run cleanly")

	out, _, err = runCLI(ctx, "--database-url", dbURL, "status", "--json")
	require.NoError(t, err)
	st = relay.Status{}
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.Zero(t, st.Pending)
	require.Zero(t, st.Failed)
	require.EqualValues(t, 2, st.Retained)
	require.Empty(t, st.Relays)

	// A parked event shows up as failed until retry-failed re-queues it.
	_, err = pool.Exec(ctx, `INSERT INTO cdc.failed_event (relay_name, id, txid, changed_at, schema_name, table_name, action, handler, error, attempts)
		VALUES ('default', 999, '1', now(), 'shop', $1, 'insert', 'test', 'refused', 3)`, table)
	require.NoError(t, err)
	out, _, err = runCLI(ctx, "--database-url", dbURL, "status")
	require.NoError(t, err)
	require.Contains(t, out, "undelivered (default): 0")
	require.Contains(t, out, "failed (default): 1")
	out, _, err = runCLI(ctx, "--database-url", dbURL, "retry-failed")
	require.NoError(t, err)
	require.Equal(t, "re-queued 1 failed events\n", out)
	out, _, err = runCLI(ctx, "--database-url", dbURL, "status")
	require.NoError(t, err)
	require.Contains(t, out, "undelivered (default): 1")
	require.Contains(t, out, "failed (default): 0")

	out, _, err = runCLI(ctx, "--database-url", dbURL, "remove-cdc", "--all-tables")
	require.NoError(t, err)
	require.Equal(t, "shop."+table+": removed\n", out)
}

func TestMain(m *testing.M) {
	if os.Getenv(relayChildEnv) != "" {
		main() // a relay process of a test (see startRelayProcess)
		return
	}
	redis.SetLogger(quietRedisLogger{}) // as main does
	os.Exit(m.Run())
}

func TestHoistGlobalFlags(t *testing.T) {
	app := newApp(nil, nil)
	tests := []struct{ in, want string }{
		{"relay run", "relay run"},
		{"relay --log-level debug run", "relay --log-level debug run"},
		{"relay run --log-level debug --batch-size 5", "relay --log-level debug run --batch-size 5"},
		{"relay run --log-level=debug", "relay --log-level=debug run"},
		{"relay --log-format json status --database-url u --json", "relay --log-format json --database-url u status --json"},
		{"relay ensure-cdc --schema s users --timeout 2s", "relay --timeout 2s ensure-cdc --schema s users"},
		{"relay ensure-cdc -- --log-level", "relay ensure-cdc -- --log-level"},
		{"relay --log-level info run --log-level debug", "relay --log-level info --log-level debug run"},
		{"relay --help", "relay --help"},
		{"relay ensure-cdc users --where a=1 --all-tables orders", "relay ensure-cdc --where a=1 --all-tables users orders"},
		{"relay ensure-cdc users --actions=insert -- --where", "relay ensure-cdc --actions=insert users -- --where"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, strings.Join(hoistGlobalFlags(app, strings.Fields(tt.in)), " "), tt.in)
	}
}
