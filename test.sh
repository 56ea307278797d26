#!/usr/bin/env bash
# Runs pgrelay's checks and tests against real PostgreSQL and Redis servers.
#
# Usage:
#   ./test.sh          gofmt, go vet and the whole test suite (with -race)
#   ./test.sh bench    the benchmark suite (internal/bench), writing BENCHMARKS.md
#
# Servers:
#   TEST_DATABASE_URL  PostgreSQL superuser URL the tests create databases on
#                      (default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)
#   TEST_REDIS_URL     Redis the tests publish to (default redis://127.0.0.1:6379/0)
#   TEST_REDIS_CLUSTER_URL
#                      Redis Cluster the cluster tests use, in go-redis's form
#                      redis://host1:port1?addr=host2:port2&addr=host3:port3
#                      (no default: no shared cluster runs here)
# When a server left at its default does not answer, a throw-away one is
# started in a temporary directory and removed when the script exits. A URL
# set explicitly is used as it is: if it does not answer, the script fails.
# The tests (not the benchmarks) also get a throw-away Redis Cluster of three
# masters on every run, unless TEST_REDIS_CLUSTER_URL names one.
# Servers this script did not start are never stopped or reconfigured.
#
# Test databases (named pgrelay_test_*) that nobody is connected to are
# dropped before the tests, left by killed runs, and after them.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
# The throw-away servers' functions, shared with the quick start; also note,
# die, is_root, apt_install, need_command, free_port and running.
# shellcheck source=scripts/throwaway.sh
source scripts/throwaway.sh
url_vars='TEST_DATABASE_URL/TEST_REDIS_URL'

readonly DEFAULT_DATABASE_URL='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'
readonly DEFAULT_REDIS_URL='redis://127.0.0.1:6379/0'
# Must match testenv.DatabasePrefix: every database the tests create starts
# with it, so whatever a killed run left behind can be found and dropped.
readonly TEST_DATABASE_PREFIX='pgrelay_test_'

# Throw-away servers, set once started so that cleanup knows what to stop.
pg_dir=''        # temporary directory holding the PostgreSQL cluster
redis_dir=''     # temporary directory holding redis.pid and redis.log
cluster_dir=''   # temporary directory holding the Redis Cluster nodes' files
cluster_ports=() # ports of the cluster nodes, each added before it starts
netns=''         # network namespace of the isolated quick start check
qs_dir=''        # temporary directory of that check: its binary, output, servers

usage() {
	sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
}

section() { printf '\n== %s\n' "$*"; }

# URL without its password, for printing.
redact() { sed -E 's#(://[^/:@]*):[^/@]*@#\1:***@#' <<<"$1"; }

# ---------------------------------------------------------------------------
# Checking servers

# cluster_ok succeeds when the Redis at URL $1 is a cluster node that sees
# every slot served (cluster_state:ok). Of a go-redis cluster URL it asks the
# first node: redis-cli does not know the ?addr= part.
cluster_ok() {
	[[ $(timeout 10 redis-cli -u "${1%%\?*}" cluster info 2>/dev/null) == *cluster_state:ok* ]]
}

# ---------------------------------------------------------------------------
# Throw-away servers

cleanup() {
	local status=$?
	# Cleanup must finish even where a step fails.
	set +e
	if [[ -n $redis_dir ]]; then
		stop_redis "$redis_dir/redis.pid"
		rm -rf "$redis_dir"
	fi
	if [[ -n $cluster_dir ]]; then
		stop_cluster
		rm -rf "$cluster_dir"
	fi
	if [[ -n $pg_dir ]]; then
		stop_postgres "$pg_dir"
		rm -rf "$pg_dir"
	fi
	[[ -n $netns ]] && remove_netns
	[[ -n $qs_dir ]] && rm -rf "$qs_dir"
	exit "$status"
}

# Run cleanup on any exit, including Ctrl-C and kill.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# own_postgres starts a throw-away PostgreSQL for this run.
own_postgres() {
	pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/pgrelay-pg.XXXXXX")
	start_postgres "$pg_dir"
	TEST_DATABASE_URL=$pg_url
	note "started throw-away PostgreSQL on 127.0.0.1:$pg_port (data in $pg_dir)"
}

# own_redis starts a throw-away Redis for this run.
own_redis() {
	redis_dir=$(mktemp -d "${TMPDIR:-/tmp}/pgrelay-redis.XXXXXX")
	start_redis "$redis_dir"
	TEST_REDIS_URL=$redis_url
	note "started throw-away Redis on 127.0.0.1:$redis_port"
}

# start_cluster starts a throw-away Redis Cluster of three masters and no
# replicas: enough for the tests to spread tables over shards and to break
# one shard's connections. No shared cluster runs on this machine.
start_cluster() {
	need_command redis-server redis-server
	cluster_dir=$(mktemp -d "${TMPDIR:-/tmp}/pgrelay-cluster.XXXXXX")
	# Bus ports are port+10000 and Redis refuses any above 65535; both stay
	# below the kernel's ephemeral range (32768 on), where a port that
	# nothing listens on may still be some outgoing connection's and fail
	# to bind. So the nodes take ports from 21000 on, their buses 31000 on.
	local port=21000 addrs=()
	for _ in 1 2 3; do
		port=$(free_port "$port" 10000)
		start_cluster_node "$port"
		addrs+=("127.0.0.1:$port")
		port=$((port + 1))
	done

	redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes \
		>"$cluster_dir/create.log" 2>&1 ||
		die "redis-cli --cluster create failed: $(tail -n 5 "$cluster_dir/create.log")"
	# Each node reports cluster_state:ok once it has learnt, over the
	# bus, which master serves every slot.
	local tries=0
	for port in "${cluster_ports[@]}"; do
		until cluster_ok "redis://127.0.0.1:$port"; do
			((++tries < 300)) ||
				die "Redis Cluster node on port $port does not reach cluster_state:ok: $(tail -n 5 "$cluster_dir/redis-$port.log")"
			sleep 0.1
		done
	done

	TEST_REDIS_CLUSTER_URL="redis://${addrs[0]}?addr=${addrs[1]}&addr=${addrs[2]}"
	note "started throw-away Redis Cluster on ${addrs[*]} (files in $cluster_dir)"
}

# start_cluster_node starts one empty cluster node on port $1, its files
# named after the port, and waits for its pid file.
start_cluster_node() {
	local port=$1 tries=0
	# Recorded first, so that cleanup looks for this node's pid file even
	# when the script is stopped while the node starts.
	cluster_ports+=("$port")
	# No persistence: the data lives only as long as this run.
	redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
		--cluster-enabled yes --cluster-config-file "$cluster_dir/nodes-$port.conf" \
		--daemonize yes --pidfile "$cluster_dir/redis-$port.pid" --dir "$cluster_dir" \
		--logfile "$cluster_dir/redis-$port.log" ||
		die "redis-server did not start on port $port"
	# The daemon writes its pid file once it listens: from then on cleanup
	# can stop it, and the next node's free_port sees the port taken.
	until [[ -s $cluster_dir/redis-$port.pid ]]; do
		((++tries < 100)) ||
			die "Redis Cluster node on port $port did not start: $(tail -n 5 "$cluster_dir/redis-$port.log")"
		sleep 0.1
	done
}

# stop_cluster stops the cluster nodes this script started, each found by its
# own pid file. A node that was starting when the script was stopped writes
# its pid file a moment later, hence the short wait for a missing one.
stop_cluster() {
	local port tries
	for port in "${cluster_ports[@]}"; do
		tries=0
		until [[ -s $cluster_dir/redis-$port.pid ]] || ((++tries > 10)); do
			sleep 0.1
		done
		stop_redis "$cluster_dir/redis-$port.pid"
	done
}

# ---------------------------------------------------------------------------
# Choosing servers

setup_servers() {
	section "servers"
	need_command psql postgresql-client
	need_command redis-cli redis-tools

	# Undocumented on purpose, for testing this script itself: with
	# PGRELAY_TEST_OWN_SERVERS=1 the throw-away servers are started even
	# when the shared ones answer, so that path can be exercised without
	# touching those.
	local own=${PGRELAY_TEST_OWN_SERVERS:-}

	if [[ $own == 1 ]]; then
		own_postgres
	elif [[ -n ${TEST_DATABASE_URL:-} ]]; then
		pg_answers "$TEST_DATABASE_URL" ||
			die "PostgreSQL at TEST_DATABASE_URL=$(redact "$TEST_DATABASE_URL") does not answer"
	elif pg_answers "$DEFAULT_DATABASE_URL"; then
		TEST_DATABASE_URL=$DEFAULT_DATABASE_URL
	else
		note "no PostgreSQL answers at $DEFAULT_DATABASE_URL"
		own_postgres
	fi

	if [[ $own == 1 ]]; then
		own_redis
	elif [[ -n ${TEST_REDIS_URL:-} ]]; then
		redis_answers "$TEST_REDIS_URL" ||
			die "Redis at TEST_REDIS_URL=$(redact "$TEST_REDIS_URL") does not answer"
	elif redis_answers "$DEFAULT_REDIS_URL"; then
		TEST_REDIS_URL=$DEFAULT_REDIS_URL
	else
		note "no Redis answers at $DEFAULT_REDIS_URL"
		own_redis
	fi

	export TEST_DATABASE_URL TEST_REDIS_URL
	note "PostgreSQL: $(redact "$TEST_DATABASE_URL")"
	note "Redis:      $(redact "$TEST_REDIS_URL")"
}

# setup_cluster chooses the Redis Cluster for the cluster tests: the one
# TEST_REDIS_CLUSTER_URL names, used as it is, or else a throw-away one.
setup_cluster() {
	if [[ -n ${TEST_REDIS_CLUSTER_URL:-} ]]; then
		cluster_ok "$TEST_REDIS_CLUSTER_URL" ||
			die "Redis Cluster at TEST_REDIS_CLUSTER_URL=$(redact "$TEST_REDIS_CLUSTER_URL") does not answer with cluster_state:ok"
	else
		start_cluster
	fi
	export TEST_REDIS_CLUSTER_URL
	note "Cluster:    $(redact "$TEST_REDIS_CLUSTER_URL")"
}

# ---------------------------------------------------------------------------
# Test databases

# Test databases that nobody is connected to. Another test run against the
# same server (a colleague's, or a second checkout's) has its databases open;
# dropping them under it would fail that run. A killed run's connections are
# gone, so what it left behind qualifies.
readonly UNUSED_TEST_DATABASES="
	FROM pg_database d
	WHERE starts_with(d.datname, :'prefix')
	  AND NOT EXISTS (SELECT FROM pg_stat_activity a
	                  WHERE a.datid = d.oid AND a.pid <> pg_backend_pid())"

# list_test_databases prints the unused test databases, one a line.
list_test_databases() {
	psql "$TEST_DATABASE_URL" -X -Atq -v ON_ERROR_STOP=1 -v prefix="$TEST_DATABASE_PREFIX" <<-SQL
		SELECT d.datname $UNUSED_TEST_DATABASES
		ORDER BY 1;
	SQL
}

# drop_test_databases drops the unused test databases. DROP DATABASE cannot
# run in a transaction or a function, so psql's \gexec runs one statement per
# name; format's %I quotes each name, FORCE ends any session that connected
# meanwhile, and IF EXISTS (with its notice silenced) copes with a database
# dropped meanwhile by its own test.
drop_test_databases() {
	psql "$TEST_DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -v prefix="$TEST_DATABASE_PREFIX" <<-SQL
		SET client_min_messages = warning;
		SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', d.datname) $UNUSED_TEST_DATABASES
		\gexec
	SQL
}

# Before the tests: remove what earlier, killed runs left behind.
drop_leftover_databases() {
	local left
	left=$(list_test_databases)
	[[ -z $left ]] && return 0
	note "dropping test databases left by earlier runs: ${left//$'\n'/ }"
	drop_test_databases
}

# After the tests: each test drops its own database, so any found now was
# leaked (or a test run was killed); say so, then drop them.
drop_leaked_databases() {
	local left
	left=$(list_test_databases)
	[[ -z $left ]] && return 0
	note "warning: test databases left behind (by these tests, or by another run that ended meanwhile); dropping: ${left//$'\n'/ }"
	drop_test_databases
}

# ---------------------------------------------------------------------------
# Checks and tests

check_gofmt() {
	section "gofmt"
	local unformatted
	unformatted=$(gofmt -l .)
	[[ -z $unformatted ]] || die "gofmt -w is needed on:"$'\n'"$unformatted"
}

check_vet() {
	section "go vet"
	go vet ./...
}

# check_quickstart_isolated runs the README's quick start where nothing
# answers at the default ports: in a network namespace of its own with only
# loopback up, where it must start throw-away servers itself, print the
# events, exit 0 and leave nothing running. The binary is built outside,
# where the module proxy answers, and the packages are installed outside,
# where the Debian archive does. Without ip netns (not root, no iproute2, a
# kernel or container that refuses) the check is skipped with a note.
check_quickstart_isolated() {
	section "quick start in a network namespace (nothing listening)"
	is_root || { note "skipped: a network namespace needs root"; return 0; }
	command -v ip >/dev/null || try_apt_install iproute2 ||
		{ note "skipped: ip (iproute2) is not installed and could not be"; return 0; }
	local name=pgrelay-qs-$$
	ip netns add "$name" 2>/dev/null || { note "skipped: ip netns add was refused"; return 0; }
	netns=$name
	local in=(ip netns exec "$netns") port start=$SECONDS status=0
	"${in[@]}" ip link set lo up
	for port in 5432 6379; do
		! "${in[@]}" bash -c ": <>/dev/tcp/127.0.0.1/$port" 2>/dev/null ||
			die "the network namespace is not isolated: 127.0.0.1:$port answers in it"
	done

	find_pg_bin >/dev/null || apt_install postgresql
	need_command redis-server redis-server
	# The quickstart's temporary directory goes in ours too, so that cleanup
	# removes whatever a failed run leaves; the postgres OS user must reach it.
	qs_dir=$(mktemp -d "${TMPDIR:-/tmp}/pgrelay-qs.XXXXXX")
	chmod 755 "$qs_dir"
	go build -o "$qs_dir/quickstart" ./examples/quickstart
	# Unset, the URLs leave the quickstart to its defaults, which refuse here.
	TMPDIR=$qs_dir timeout 120 "${in[@]}" env -u PG_DATABASE_URL -u DATABASE_URL -u REDIS_URL \
		"$qs_dir/quickstart" >"$qs_dir/out" 2>&1 || status=$?
	local fail=''
	if ((status != 0)); then
		fail="exited with status $status"
	elif ! grep -q '^nothing answers at 127.0.0.1:5432 and 127.0.0.1:6379: started throw-away' "$qs_dir/out"; then
		fail="did not say it started throw-away servers"
	elif [[ $(grep -c '^→ ' "$qs_dir/out") != 4 ]] || ! grep -q '^received all 4 events' "$qs_dir/out"; then
		fail="did not print its 4 events"
	elif compgen -G "$qs_dir/pgrelay-quickstart-*" >/dev/null || ! netns_empty; then
		fail="left its throw-away servers behind"
	fi
	[[ -z $fail ]] || die "the quick start in a network namespace $fail:"$'\n'"$(cat "$qs_dir/out")"
	note "passed in $((SECONDS - start))s: 4 events through the throw-away servers it started and removed"
}

# netns_empty succeeds once no process runs in the network namespace, waiting
# a moment for the last ones to exit.
netns_empty() {
	local tries=0
	until [[ -z $(ip netns pids "$netns" 2>/dev/null) ]]; do
		((++tries <= 20)) || return 1
		sleep 0.1
	done
}

# remove_netns ends what still runs in the network namespace (only a failed
# check leaves anything, and only this script starts processes there), then
# deletes it.
remove_netns() {
	local pid
	for pid in $(ip netns pids "$netns" 2>/dev/null); do
		kill "$pid" 2>/dev/null
	done
	netns_empty || for pid in $(ip netns pids "$netns" 2>/dev/null); do
		kill -KILL "$pid" 2>/dev/null
	done
	ip netns delete "$netns"
}

# run_go_tests runs go test with the given arguments, then drops any test
# databases, whether or not the tests passed, and returns go test's status.
run_go_tests() {
	local status=0
	go test "$@" ./... || status=$?
	drop_leaked_databases
	return "$status"
}

# want_pgbouncer installs PgBouncer when it is missing and we may: the
# connection-pooler test runs through a real one, and is skipped without it.
want_pgbouncer() {
	want_package pgbouncer pgbouncer "the connection-pooler test"
}

# need_pgbench makes sure pgbench runs: relay/TestRelayMirrorsTPCB drives
# its TPC-B load. Debian ships the program with the server (postgresql-15
# on Debian 12, which the postgresql package pulls in), not in
# postgresql-client-NN, while /usr/bin/pgbench, from
# postgresql-client-common, is a wrapper that is there either way: hence
# running it rather than need_command's command -v.
need_pgbench() {
	pgbench --version >/dev/null 2>&1 || apt_install postgresql
	pgbench --version >/dev/null 2>&1 || die "pgbench still does not run after installing postgresql"
}

# want_chromium installs Debian's Chromium when it is missing and we may:
# the SSE page's test drives a real headless browser, and is skipped
# without one.
want_chromium() {
	want_package chromium chromium "the browser test"
}

# want_package installs Debian package $2 when command $1 is missing and
# we may, or says that test $3, which needs it, will be skipped.
want_package() {
	command -v "$1" >/dev/null 2>&1 && return 0
	if is_root; then
		try_apt_install "$2" || note "could not install $2: $3 will be skipped"
	else
		note "$2 is not installed: $3 will be skipped"
	fi
}

cmd_test() {
	setup_servers
	setup_cluster
	want_pgbouncer
	want_chromium
	need_pgbench
	drop_leftover_databases
	check_gofmt
	check_vet
	check_quickstart_isolated
	section "go test"
	run_go_tests -race -count=1 -timeout 8m
}

cmd_bench() {
	setup_servers
	drop_leftover_databases
	section "benchmarks (writes BENCHMARKS.md)"
	local status=0
	go run ./internal/bench -out BENCHMARKS.md "${@:2}" || status=$?
	drop_leaked_databases
	return "$status"
}

main() {
	case ${1:-test} in
	test) cmd_test ;;
	bench) cmd_bench "$@" ;;
	-h | --help | help) usage ;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

main "$@"
