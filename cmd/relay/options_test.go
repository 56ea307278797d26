package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

// TestCLICaptureOptions: ensure-cdc sets exactly the options given, says
// whether it changed anything, refuses bad options with one line and no
// change, and status shows the options.
func TestCLICaptureOptions(t *testing.T) {
	ctx := testenv.Context(t)
	dbURL := testenv.NewDatabase(t)
	pool := testenv.Pool(t, dbURL)
	_, err := pool.Exec(ctx, `CREATE TABLE acct (id int PRIMARY KEY, name text, secret text, seen int)`)
	require.NoError(t, err)
	with := []string{"--database-url", dbURL, "ensure-cdc", "acct", "--actions", "insert,update",
		"--ignore-columns", "seen", "--exclude-columns", "secret", "--where", "name <> 'bot'"}

	for _, step := range []struct {
		args []string
		want string
	}{
		{with, "public.acct: installed\n"},
		{with, "public.acct: unchanged\n"},
		{[]string{"--database-url", dbURL, "ensure-cdc", "acct"}, "public.acct: updated\n"},
		{with, "public.acct: updated\n"},
	} {
		out, _, err := runCLI(ctx, step.args...)
		require.NoError(t, err)
		require.Equal(t, step.want, out)
	}

	out, _, err := runCLI(ctx, "--database-url", dbURL, "status")
	require.NoError(t, err)
	require.Contains(t, out, "  public.acct (actions insert,update; ignore seen; exclude secret; where (name <> 'bot'::text) (gated))\n")
	out, _, err = runCLI(ctx, "--database-url", dbURL, "status", "--json")
	require.NoError(t, err)
	var st relay.Status
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.Equal(t, []relay.TableStatus{{Schema: "public", Table: "acct", Captured: true, Actions: []string{"insert", "update"},
		IgnoreColumns: []string{"seen"}, ExcludeColumns: []string{"secret"}, Where: "(name <> 'bot'::text)", WhereGated: true}}, st.Tables)

	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--exclude-columns", "nope"}, "table public.acct: exclude_columns names column nope, which does not exist"},
		{[]string{"--exclude-columns", "id"}, "table public.acct: column id is part of the primary key"},
		{[]string{"--actions", "insert,merge"}, "table public.acct: unknown action 'merge'"},
		{[]string{"--where", "name = (SELECT 'x')"}, "table public.acct: the row filter references other tables"},
		{[]string{"--where", "random() < 0.5"}, "table public.acct: the row filter calls a volatile function"},
		{[]string{"--where", "name ="}, "table public.acct: the row filter does not parse"},
	} {
		_, line, err := runCLI(ctx, append([]string{"--database-url", dbURL, "ensure-cdc", "acct"}, tc.flags...)...)
		require.Error(t, err)
		require.Contains(t, line, tc.want)
	}
	out, _, err = runCLI(ctx, append(with, "--where", "name <> 'bot'")...)
	require.NoError(t, err)
	require.Equal(t, "public.acct: unchanged\n", out, "the refused changes changed nothing")
}
