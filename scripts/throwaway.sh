#!/usr/bin/env bash
# Throw-away PostgreSQL and Redis servers on free local ports, for test.sh and
# the quick start when nothing answers at the usual ports.
#
# Usage:
#   scripts/throwaway.sh start DIR [postgres] [redis]
#       starts the named servers (both by default) with their files in DIR,
#       an existing empty directory, and prints PG_DATABASE_URL=… and
#       REDIS_URL=… lines on stdout; notes go to stderr
#   scripts/throwaway.sh stop DIR
#       stops whatever start started in DIR and removes DIR
#
# Missing Debian packages are installed with apt-get when running as root;
# otherwise the script says what to install. As root, PostgreSQL runs as the
# postgres OS user. start stops what it started when it fails; call stop
# afterwards whatever happens. test.sh sources this file for its functions.

# ---------------------------------------------------------------------------
# Messages and tools

# url_vars names the settings that point the caller at servers of its own,
# for messages; test.sh sets its own.
url_vars='PG_DATABASE_URL/REDIS_URL'

# note prints a line of progress.
note() { printf '%s\n' "$*"; }

# die prints an error line, prefixed with the program's name, and exits.
die() {
	printf '%s: %s\n' "${0##*/}" "$*" >&2
	exit 1
}

# is_root succeeds when running as root.
is_root() { [[ $(id -u) == 0 ]]; }

# apt_install installs Debian packages, as root only: a developer who is not
# root gets told what is missing instead of a sudo prompt in the middle of a
# run. On machines without an init system (containers, CI) Debian's
# invoke-rc.d refuses to start the packaged services, so installing a server
# package does not also start a second server.
apt_install() {
	is_root && command -v apt-get >/dev/null ||
		die "not installed: $*; run 'apt-get install $*' as root, or set $url_vars"
	note "installing Debian package(s): $*"
	export DEBIAN_FRONTEND=noninteractive
	# The package lists may be missing or stale on a fresh machine.
	apt-get install -y -qq "$@" >/dev/null ||
		{ apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; } ||
		die "apt-get install $* failed"
}

# try_apt_install is apt_install for what a run can do without: it
# installs Debian package(s) when root and says nothing, or fails quietly.
try_apt_install() {
	is_root && command -v apt-get >/dev/null || return 1
	export DEBIAN_FRONTEND=noninteractive
	{ apt-get install -y -qq "$@" || { apt-get update -qq && apt-get install -y -qq "$@"; }; } >/dev/null 2>&1
}

# need_command makes sure command $1 exists, installing Debian package $2.
need_command() {
	command -v "$1" >/dev/null || apt_install "$2"
	command -v "$1" >/dev/null || die "$1 still not found after installing $2"
}

# ---------------------------------------------------------------------------
# Checking servers and ports

# pg_answers succeeds when the PostgreSQL at URL $1 runs a query.
pg_answers() {
	PGCONNECT_TIMEOUT=5 psql "$1" -X -Atqc 'select 1' >/dev/null 2>&1
}

# redis_answers succeeds when the Redis at URL $1 answers PING.
redis_answers() {
	[[ $(timeout 10 redis-cli -u "$1" ping 2>/dev/null) == PONG ]]
}

# port_in_use succeeds when something listens on local port $1.
port_in_use() {
	# A connection that opens means something listens there already.
	(: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port prints the first port from $1 on that nothing listens on, nor on
# that port plus any further argument: a Redis Cluster node also listens on
# its cluster bus port, port+10000.
free_port() {
	local port=$1
	until ports_free "$port" "${@:2}"; do
		port=$((port + 1))
		((port < $1 + 100)) || die "no free port in $1..$port"
	done
	echo "$port"
}

# ports_free succeeds when nothing listens on port $1, nor on $1 plus any
# further argument.
ports_free() {
	local offset
	for offset in 0 "${@:2}"; do
		! port_in_use $(($1 + offset)) || return 1
	done
}

# running succeeds while process $1 runs. A zombie has exited: only its
# parent (init, for a daemon) has yet to reap it, which some container inits
# do only every few seconds. Without ps, kill -0 alone decides.
running() {
	kill -0 "$1" 2>/dev/null && [[ $(ps -o stat= -p "$1" 2>/dev/null) != Z* ]]
}

# ---------------------------------------------------------------------------
# PostgreSQL

# find_pg_bin prints the directory of the newest installed initdb and pg_ctl.
find_pg_bin() {
	local dir
	dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
	[[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl ]] && echo "$dir"
}

# as_pg_owner runs a PostgreSQL server program (the rest of the arguments)
# in directory $1. PostgreSQL refuses to run as root, so as root it runs as
# the postgres OS user the Debian package makes.
as_pg_owner() {
	local dir=$1
	shift
	if ! is_root; then
		(cd "$dir" && "$@")
	elif command -v runuser >/dev/null; then
		(cd "$dir" && runuser -u postgres -- "$@")
	else
		(cd "$dir" && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
	fi
}

# start_postgres starts a PostgreSQL cluster in directory $1, which must
# exist, on a free port, and sets pg_bin, pg_port and pg_url.
start_postgres() {
	local dir=$1
	pg_bin=$(find_pg_bin) || { apt_install postgresql && pg_bin=$(find_pg_bin); } ||
		die "initdb and pg_ctl not found under /usr/lib/postgresql/*/bin"
	if is_root; then
		id postgres >/dev/null 2>&1 || die "running as root, but there is no postgres OS user to run PostgreSQL as"
		chown postgres: "$dir"
	fi
	pg_port=$(free_port 55432)

	# Trust auth and no locale: a private server only this run talks to.
	as_pg_owner "$dir" "$pg_bin/initdb" -D "$dir/data" -U postgres --auth=trust \
		--encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
		die "initdb failed: $(tail -n 5 "$dir/initdb.log")"
	# fsync=off: nothing here must survive a crash, and it is much faster.
	# The tests open many connections in parallel, hence max_connections.
	# The socket goes in our own directory, away from the system server's.
	as_pg_owner "$dir" "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -p $pg_port -c fsync=off -c max_connections=200 -c unix_socket_directories=$dir" \
		start >/dev/null ||
		die "PostgreSQL did not start: $(tail -n 5 "$dir/server.log")"

	pg_url="postgres://postgres@127.0.0.1:$pg_port/postgres?sslmode=disable"
	local tries=0
	until pg_answers "$pg_url"; do
		((++tries < 60)) || die "PostgreSQL started but does not answer on port $pg_port"
		sleep 0.5
	done
}

# stop_postgres stops the PostgreSQL that start_postgres started in
# directory $1, if it runs.
stop_postgres() {
	local dir=$1 tries=0
	# pg_ctl creates the log just before the server, which writes its pid
	# file a moment later: a start that was interrupted in between still
	# leaves a server to stop.
	if [[ -f $dir/server.log ]]; then
		until [[ -f $dir/data/postmaster.pid ]] || ((++tries > 20)); do
			sleep 0.1
		done
	fi
	[[ -f $dir/data/postmaster.pid ]] || return 0
	pg_bin=${pg_bin:-$(find_pg_bin)} || return 0
	as_pg_owner "$dir" "$pg_bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------------------
# Redis

# start_redis starts a Redis without persistence, its files in directory $1,
# which must exist, on a free port, and sets redis_port and redis_url.
start_redis() {
	local dir=$1
	need_command redis-server redis-server
	redis_port=$(free_port 56379)

	redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
		--daemonize yes --pidfile "$dir/redis.pid" --dir "$dir" \
		--logfile "$dir/redis.log" ||
		die "redis-server did not start"

	redis_url="redis://127.0.0.1:$redis_port/0"
	local tries=0
	until redis_answers "$redis_url"; do
		((++tries < 60)) || die "Redis started but does not answer on port $redis_port: $(tail -n 5 "$dir/redis.log")"
		sleep 0.5
	done
}

# stop_redis stops a Redis started here, found by its own pid file $1.
stop_redis() {
	local pid tries=0
	pid=$(cat "$1" 2>/dev/null) || return 0
	kill "$pid" 2>/dev/null || return 0
	while running "$pid"; do
		if ((++tries > 50)); then
			kill -KILL "$pid" 2>/dev/null
			return 0
		fi
		sleep 0.2
	done
}

# ---------------------------------------------------------------------------
# Command line

# cmd_start starts the servers named after directory $1 (both by default)
# and prints their URLs on stdout, everything else on stderr (the servers
# keep neither open: a caller reads both to the end). PostgreSQL's
# files go in $1 itself (owned by the postgres OS user as root), Redis's in
# $1/redis.
cmd_start() {
	local dir=$1 want=" ${*:2} " missing=()
	[[ $want == '  ' ]] && want=' postgres redis '
	[[ -d $dir ]] || die "start: no directory $dir"
	# Expanded now: the functions called meanwhile have a dir of their own.
	trap "status=\$?; ((status == 0)) || cmd_stop $(printf %q "$dir"); exit \$status" EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	# Everything missing, installed (or named) at once.
	if [[ $want == *' postgres '* ]]; then
		find_pg_bin >/dev/null || missing+=(postgresql)
		command -v psql >/dev/null || missing+=(postgresql-client)
	fi
	if [[ $want == *' redis '* ]]; then
		command -v redis-server >/dev/null || missing+=(redis-server)
		command -v redis-cli >/dev/null || missing+=(redis-tools)
	fi
	((${#missing[@]} == 0)) || apt_install "${missing[@]}" >&2

	if [[ $want == *' postgres '* ]]; then
		start_postgres "$dir" >&2
		printf 'PG_DATABASE_URL=%s\n' "$pg_url"
	fi
	if [[ $want == *' redis '* ]]; then
		mkdir -p "$dir/redis"
		start_redis "$dir/redis" >&2
		printf 'REDIS_URL=%s\n' "$redis_url"
	fi
}

# cmd_stop stops what cmd_start started in directory $1 and removes it.
cmd_stop() {
	local dir=$1
	[[ -d $dir ]] || return 0
	# A second Ctrl-C must not leave the servers half stopped; what runs
	# from here on inherits the ignoring.
	trap '' INT
	stop_redis "$dir/redis/redis.pid"
	stop_postgres "$dir"
	rm -rf "$dir"
}

# usage prints the usage lines above and exits with status 2.
usage() {
	sed -n '5,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

# main runs the command line when the file is run rather than sourced.
main() {
	set -euo pipefail
	case ${1:-} in
	start)
		(($# >= 2)) || usage
		local name
		for name in "${@:3}"; do
			[[ $name == postgres || $name == redis ]] || usage
		done
		cmd_start "${@:2}"
		;;
	stop)
		(($# == 2)) || usage
		cmd_stop "$2"
		;;
	*) usage ;;
	esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	main "$@"
fi
