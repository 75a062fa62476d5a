#!/usr/bin/env bash
# deployments/local/cluster.sh: a whole natter cluster on loopback, from one
# command: 3 NATS nodes (routed), a private MariaDB, 2 instances of each
# service, 2 gateways (TCP and WebSocket with the web page), nginx load
# balancing them (TCP: stream; WebSocket and the page: http) and Prometheus
# scraping every natter process with natter's alerting rules. See README.md next to
# this file; `cluster.sh help` lists the commands.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: cluster.sh COMMAND [ARGS]

  up [--keep]          start every component that is not running and wait until
                       all are ready; print the table. On failure, stop the
                       cluster again (--keep: leave it running to look at)
  down [--purge]       stop every component (SIGTERM, then SIGKILL after
                       $NATTER_CLUSTER_STOP_TIMEOUT s); --purge: also delete the
                       state directory (database, logs, configs)
  status               the table: component, pid, state, addresses, log
                       (exit 0 only when every component is ready)
  env                  KEY=VALUE lines with the cluster's addresses (TCP:
                       NATTER_CLUSTER_ADDR; WebSocket: NATTER_CLUSTER_WS_ADDR)
  start COMPONENT      start one component with the command line `up` uses, and
                       wait until it is ready (gateway-3 and up: also added to
                       nginx; user-3 etc.: join their queue group)
  stop COMPONENT       stop one component as `down` does
  kill COMPONENT [SIG] send a signal (default TERM; KILL hits its process group)
                       and wait up to $NATTER_CLUSTER_KILL_WAIT s for TERM, INT,
                       QUIT and KILL to end it
  pid COMPONENT        print the component's pid (exit 1 when not running)
  log COMPONENT        print the path of the component's log
  reload-nginx         rewrite the nginx configuration and reload it (old workers
                       keep their connections; see deployments/nginx/README.md)

Components: nats-1..3, mysql, user-1..2, offline-1..2, friend-1..2,
group-1..2, gateway-1..2, nginx, prometheus (any index 1-9 for
start/stop/kill).

Environment (read by `up`, then kept in the state directory):
  NATTER_CLUSTER_DIR        state directory (default deployments/local/.cluster)
  NATTER_CLUSTER_BASE_PORT  ports are BASE..BASE+99 (default 17000)
  NATTER_CLUSTER_GATEWAYS   gateways behind nginx (default 2)
  NATTER_CLUSTER_INSTANCES  instances of each service (default 2)
  NATTER_CLUSTER_NATS_NODES NATS nodes (default 3)
  NATTER_BIN                directory of the natter binaries (default ./bin,
                            built with `make build` when missing)
  NATTER_NATS_SERVER        nats-server binary (default: on PATH if at least
                            v2.10, else built from tools/go.mod's version)
  NATTER_CLUSTER_GATEWAY_ARGS, NATTER_CLUSTER_SERVICE_ARGS,
  NATTER_CLUSTER_{USER,OFFLINE,FRIEND,GROUP}_ARGS
                            extra flags (whitespace-separated) for the gateways,
                            every service, one service
Not kept (read by every command):
  NATTER_CLUSTER_TIMEOUT       seconds to wait for a component (default 60)
  NATTER_CLUSTER_STOP_TIMEOUT  seconds between SIGTERM and SIGKILL (default 30)
  NATTER_CLUSTER_KILL_WAIT     seconds `kill` waits (default 30; 0: no wait)
EOF
}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
NGINX_TEMPLATES=$ROOT/deployments/nginx
CACHE_DIR=$SCRIPT_DIR/.cache
STATE=$(realpath -m -- "${NATTER_CLUSTER_DIR:-$SCRIPT_DIR/.cluster}")
CONF=$STATE/cluster.conf
RUN=$STATE/run
LOGS=$STATE/log

TIMEOUT=${NATTER_CLUSTER_TIMEOUT:-60}
STOP_TIMEOUT=${NATTER_CLUSTER_STOP_TIMEOUT:-30}
KILL_WAIT=${NATTER_CLUSTER_KILL_WAIT:-30}
NATS_MIN_VERSION=2.10.0
SERVICES=(user offline friend group)
MYSQL_USER=natter
MYSQL_PASSWORD=natter
MYSQL_DB=natter

say() { printf 'cluster: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

# ---------------------------------------------------------------- settings

# Settings: the environment, else what the state directory keeps, else the
# defaults. load_settings reads them; save_settings keeps them for later
# commands (so `kill` and `start` use the ports `up` used).
load_settings() {
	local s_base='' s_gw='' s_inst='' s_nats='' s_bin='' s_natsbin=''
	local s_gwargs='' s_svcargs='' s_userargs='' s_offargs='' s_friendargs='' s_groupargs=''
	if [[ -f $CONF ]]; then
		# shellcheck disable=SC1090
		source "$CONF"
		s_base=$BASE_PORT s_gw=$GATEWAYS s_inst=$INSTANCES s_nats=$NATS_NODES
		s_bin=$BIN_DIR s_natsbin=$NATS_BIN
		s_gwargs=$GATEWAY_ARGS s_svcargs=$SERVICE_ARGS s_userargs=$USER_ARGS
		s_offargs=$OFFLINE_ARGS s_friendargs=$FRIEND_ARGS s_groupargs=$GROUP_ARGS
	fi
	BASE_PORT=${NATTER_CLUSTER_BASE_PORT:-${s_base:-17000}}
	GATEWAYS=${NATTER_CLUSTER_GATEWAYS:-${s_gw:-2}}
	INSTANCES=${NATTER_CLUSTER_INSTANCES:-${s_inst:-2}}
	NATS_NODES=${NATTER_CLUSTER_NATS_NODES:-${s_nats:-3}}
	BIN_DIR=${NATTER_BIN:-${s_bin:-$ROOT/bin}}
	BIN_DIR=$(realpath -m -- "$BIN_DIR")
	NATS_BIN=${NATTER_NATS_SERVER:-$s_natsbin}
	GATEWAY_ARGS=${NATTER_CLUSTER_GATEWAY_ARGS-$s_gwargs}
	SERVICE_ARGS=${NATTER_CLUSTER_SERVICE_ARGS-$s_svcargs}
	USER_ARGS=${NATTER_CLUSTER_USER_ARGS-$s_userargs}
	OFFLINE_ARGS=${NATTER_CLUSTER_OFFLINE_ARGS-$s_offargs}
	FRIEND_ARGS=${NATTER_CLUSTER_FRIEND_ARGS-$s_friendargs}
	GROUP_ARGS=${NATTER_CLUSTER_GROUP_ARGS-$s_groupargs}

	if ! [[ $BASE_PORT =~ ^[0-9]+$ ]] || ((BASE_PORT < 1024 || BASE_PORT > 65535 - 100)); then
		die "NATTER_CLUSTER_BASE_PORT=$BASE_PORT: want 1024..65435 (the cluster uses BASE..BASE+99)"
	fi
	local n
	for n in GATEWAYS INSTANCES NATS_NODES; do
		[[ ${!n} =~ ^[1-9]$ ]] || die "$n=${!n}: want 1..9"
	done
}

# The settings differ from the kept ones (only allowed while nothing runs).
settings_changed() {
	[[ -f $CONF ]] || return 1
	local now
	now=$(print_settings)
	[[ $now != "$(cat "$CONF")" ]]
}

print_settings() {
	local v
	for v in BASE_PORT GATEWAYS INSTANCES NATS_NODES BIN_DIR NATS_BIN \
		GATEWAY_ARGS SERVICE_ARGS USER_ARGS OFFLINE_ARGS FRIEND_ARGS GROUP_ARGS; do
		printf '%s=%q\n' "$v" "${!v}"
	done
}

save_settings() {
	mkdir -p "$STATE"
	print_settings >"$CONF.tmp"
	mv "$CONF.tmp" "$CONF"
}

# ------------------------------------------------------------------- ports

# BASE+0 nginx, +1..9 gateway client ports, +10 mysql, +11..19 NATS client,
# +21..29 NATS routes, +31..39 NATS monitoring, +41..49 gateway --http,
# +51.. user, +61.. offline, +71.. friend, +81.. group --http,
# +90 nginx http (WebSocket, web page), +91..99 gateway --ws-listen,
# +30 Prometheus.
comp_kind() { printf '%s' "${1%-[0-9]}"; }
comp_index() {
	local c=$1
	if [[ $c == *-[1-9] ]]; then printf '%s' "${c##*-}"; else printf 0; fi
}
port_client() { # client port of nginx, gateway-N, nats-N, mysql
	local kind idx
	kind=$(comp_kind "$1") idx=$(comp_index "$1")
	case $kind in
	nginx) echo $((BASE_PORT)) ;;
	gateway) echo $((BASE_PORT + idx)) ;;
	mysql) echo $((BASE_PORT + 10)) ;;
	nats) echo $((BASE_PORT + 10 + idx)) ;;
	*) return 1 ;;
	esac
}
port_route() { echo $((BASE_PORT + 20 + $(comp_index "$1"))); }
port_ws() { # WebSocket (and web page) port of nginx or gateway-N
	case $(comp_kind "$1") in
	nginx) echo $((BASE_PORT + 90)) ;;
	gateway) echo $((BASE_PORT + 90 + $(comp_index "$1"))) ;;
	*) return 1 ;;
	esac
}
port_http() { # NATS monitoring port or natter --http port
	local kind idx
	kind=$(comp_kind "$1") idx=$(comp_index "$1")
	case $kind in
	prometheus) echo $((BASE_PORT + 30)) ;;
	nats) echo $((BASE_PORT + 30 + idx)) ;;
	gateway) echo $((BASE_PORT + 40 + idx)) ;;
	user) echo $((BASE_PORT + 50 + idx)) ;;
	offline) echo $((BASE_PORT + 60 + idx)) ;;
	friend) echo $((BASE_PORT + 70 + idx)) ;;
	group) echo $((BASE_PORT + 80 + idx)) ;;
	*) return 1 ;;
	esac
}

valid_comp() {
	[[ $1 =~ ^(nats|gateway|user|offline|friend|group)-[1-9]$ || $1 == mysql || $1 == nginx || $1 == prometheus ]]
}

# Every component of the configured cluster, in start order.
all_comps() {
	local i s
	for ((i = 1; i <= NATS_NODES; i++)); do echo "nats-$i"; done
	echo mysql
	for s in "${SERVICES[@]}"; do
		for ((i = 1; i <= INSTANCES; i++)); do echo "$s-$i"; done
	done
	for ((i = 1; i <= GATEWAYS; i++)); do echo "gateway-$i"; done
	echo nginx
	echo prometheus
}

# Components with a pid file (started at some point, maybe beyond the
# configured counts), in stop order: nginx, gateways, services, NATS, MySQL.
started_comps() {
	local f c tier
	shopt -s nullglob
	for f in "$RUN"/*.pid; do
		c=$(basename "$f" .pid)
		valid_comp "$c" || continue
		case $(comp_kind "$c") in
		nginx | prometheus) tier=0 ;; gateway) tier=1 ;; nats) tier=3 ;; mysql) tier=4 ;; *) tier=2 ;;
		esac
		echo "$tier $c"
	done | sort | cut -d' ' -f2
	shopt -u nullglob
}

# The NATS URLs, starting at node $1 (so instances spread over the nodes).
nats_urls() {
	local first=$1 i n urls=()
	for ((i = 0; i < NATS_NODES; i++)); do
		n=$(((first - 1 + i) % NATS_NODES + 1))
		urls+=("nats://127.0.0.1:$(port_client "nats-$n")")
	done
	local IFS=,
	echo "${urls[*]}"
}

mysql_dsn() { echo "$MYSQL_USER:$MYSQL_PASSWORD@tcp(127.0.0.1:$(port_client mysql))/$MYSQL_DB"; }

# --------------------------------------------------------------- processes

pid_file() { echo "$RUN/$1.pid"; }
log_file() { echo "$LOGS/$1.log"; }

# A string the process's command line contains: tells our process from an
# unrelated one that reused the pid.
comp_marker() {
	case $(comp_kind "$1") in
	nats) echo "$STATE/nats/$1.conf" ;;
	mysql) echo "--datadir=$STATE/mysql/data" ;;
	nginx) echo "$STATE/nginx/" ;;
	prometheus) echo "--config.file=$STATE/prometheus/prometheus.yml" ;;
	*) echo "--http 127.0.0.1:$(port_http "$1")" ;;
	esac
}

# The pid of a running component (exit 1 if it is not running).
comp_pid() {
	local f pid state
	f=$(pid_file "$1")
	[[ -f $f ]] || return 1
	pid=$(<"$f")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/stat && -r /proc/$pid/cmdline ]] || return 1
	state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1) || return 1
	[[ $state != Z && $state != X ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(comp_marker "$1")" || return 1
	echo "$pid"
}
running() { comp_pid "$1" >/dev/null; }

# comp_cmd COMPONENT: sets CMD to the component's command line.
comp_cmd() {
	local c=$1 kind idx extra=() svcextra=()
	kind=$(comp_kind "$c") idx=$(comp_index "$c")
	case $kind in
	nats)
		CMD=("$NATS_BIN" -c "$STATE/nats/$c.conf")
		;;
	mysql)
		CMD=("$MYSQLD" --no-defaults "--datadir=$STATE/mysql/data"
			"--port=$(port_client mysql)" "--socket=$STATE/mysql/mysqld.sock"
			--bind-address=127.0.0.1 "--pid-file=$STATE/mysql/mysqld.pid"
			"--tmpdir=$STATE/mysql/tmp" --skip-name-resolve --skip-log-bin
			--max-connections=1000 --innodb-buffer-pool-size=128M
			--character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci)
		((EUID == 0)) && CMD+=(--user=root)
		;;
	nginx)
		CMD=("$NGINX" -p "$STATE/nginx/" -e "$(log_file nginx)" -c "$STATE/nginx/nginx.conf" -g 'daemon off;')
		;;
	prometheus)
		CMD=("$PROMETHEUS" "--config.file=$STATE/prometheus/prometheus.yml" "--storage.tsdb.path=$STATE/prometheus/data"
			"--web.listen-address=127.0.0.1:$(port_http prometheus)" --storage.tsdb.retention.time=2d --web.enable-lifecycle)
		;;
	gateway)
		read -ra extra <<<"$GATEWAY_ARGS"
		CMD=("$BIN_DIR/natter-gateway" --nats "$(nats_urls $(((idx - 1) % NATS_NODES + 1)))"
			--listen "127.0.0.1:$(port_client "$c")" --ws-listen "127.0.0.1:$(port_ws "$c")" --web
			--http "127.0.0.1:$(port_http "$c")" "${extra[@]}")
		;;
	user | offline | friend | group)
		read -ra extra <<<"$SERVICE_ARGS"
		local v=${kind^^}_ARGS
		read -ra svcextra <<<"${!v}"
		CMD=("$BIN_DIR/natter-$kind" --nats "$(nats_urls $(((idx - 1) % NATS_NODES + 1)))"
			--mysql-dsn "$(mysql_dsn)" --http "127.0.0.1:$(port_http "$c")" "${extra[@]}" "${svcextra[@]}")
		;;
	esac
}

# start_proc COMPONENT: runs the component's command line in its own session
# (no terminal, its own process group), output appended to its log.
start_proc() {
	local c=$1 pidf log i
	pidf=$(pid_file "$c") log=$(log_file "$c")
	comp_cmd "$c"
	mkdir -p "$RUN" "$LOGS"
	rm -f "$pidf"
	printf '==== %s cluster.sh: starting %s:%s\n' "$(date '+%F %T')" "$c" "$(printf ' %q' "${CMD[@]}")" >>"$log"
	# The child writes its own pid, then execs: the pid is the component's.
	# shellcheck disable=SC2016
	setsid -f bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidf" "${CMD[@]}" </dev/null >>"$log" 2>&1
	for ((i = 0; i < 50; i++)); do
		[[ -s $pidf ]] && return 0
		sleep 0.1
	done
	die "$c: no pid file after 5s ($pidf)"
}

# signal_comp COMPONENT SIGNAL: KILL goes to the whole process group (nginx
# workers too), other signals to the process only.
signal_comp() {
	local c=$1 sig=$2 pid
	pid=$(comp_pid "$c") || return 0
	if [[ $sig == KILL || $sig == 9 ]]; then
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
	else
		kill "-$sig" "$pid" 2>/dev/null || true
	fi
}

# wait_gone SECONDS COMPONENT...: wait until none of them runs.
wait_gone() {
	local secs=$1 c left deadline
	shift
	deadline=$((SECONDS + secs))
	while :; do
		left=0
		for c in "$@"; do running "$c" && left=1; done
		((left)) || return 0
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

# stop_comps COMPONENT...: SIGTERM, then SIGKILL (process group) after
# STOP_TIMEOUT; removes their pid files.
stop_comps() {
	local c alive=()
	for c in "$@"; do
		if running "$c"; then
			alive+=("$c")
			say "stopping $c (pid $(comp_pid "$c"))"
		fi
	done
	for c in "${alive[@]}"; do signal_comp "$c" TERM; done
	if ((${#alive[@]})) && ! wait_gone "$STOP_TIMEOUT" "${alive[@]}"; then
		for c in "${alive[@]}"; do
			if running "$c"; then
				say "$c did not stop within ${STOP_TIMEOUT}s: SIGKILL"
				signal_comp "$c" KILL
			fi
		done
		wait_gone 10 "${alive[@]}" || die "could not kill: $*"
	fi
	for c in "$@"; do rm -f "$(pid_file "$c")"; done
}

tail_log() {
	local log
	log=$(log_file "$1")
	if [[ -f $log ]]; then
		say "last lines of $log:"
		tail -n 25 "$log" | sed 's/^/    /' >&2
	fi
}

# ------------------------------------------------------------------ probes

http_status() { # http_status URL -> the status code, 000 when no answer
	curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true
}

# Distinct NATS servers node $1 has routes to.
nats_peers() {
	curl -s -m 2 "http://127.0.0.1:$(port_http "$1")/routez" 2>/dev/null |
		grep -o '"remote_id": *"[^"]*"' | sort -u | wc -l
}

mysql_client() {
	"$MYSQL_CLI" --no-defaults "--socket=$STATE/mysql/mysqld.sock" -uroot "$@"
}

# A PING through nginx (or a gateway) answered with a PONG.
chat_ping() {
	# shellcheck disable=SC2016
	timeout 3 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "{\"msgid\":11}\n" >&3
		IFS= read -r -t 2 line <&3 || exit 1
		[[ $line == *"\"msgid\":12"* ]]' _ "$1" 2>/dev/null
}

# A PING over WebSocket through nginx (or a gateway's --ws-listen port)
# answered with a PONG: the handshake must get 101, then a text frame
# {"msgid":11} (masked with a zero key, as a client must mask) must come
# back as {"msgid":12}.
ws_ping() {
	# shellcheck disable=SC2016
	timeout 3 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: bmF0dGVyLWNsdXN0ZXIuMQ==\r\n\r\n" "$1" >&3
		IFS= read -r -t 2 status <&3 || exit 1
		[[ $status == "HTTP/1.1 101 "* ]] || exit 1
		while IFS= read -r -t 2 line <&3; do [[ $line == $'"'"'\r'"'"' ]] && break; done
		printf "\x81\x8c\x00\x00\x00\x00{\"msgid\":11}" >&3
		IFS= read -r -t 2 -N 14 frame <&3 || exit 1
		[[ $frame == *"{\"msgid\":12}" ]]' _ "$1" 2>/dev/null
}

# shellcheck disable=SC2016
port_open() { timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }

# owns_ports COMPONENT: each of the component's ports is listened on by
# the component's own process, and by nothing else: a process that took
# a port before the component could bind it would otherwise answer the
# probes for it. (/proc/net/tcp{,6}: the local port in hex, state 0A is
# LISTEN, the socket's inode; /proc/PID/fd links to socket:[INODE].)
owns_ports() {
	local c=$1 pid p inodes i
	pid=$(comp_pid "$c") || return 1
	local -A mine=()
	for i in $(find "/proc/$pid/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null | tr -dc '0-9\n'); do
		mine[$i]=1
	done
	for p in $(comp_ports "$c"); do
		inodes=$(awk -v port=":$(printf '%04X' "$p")" \
			'$4 == "0A" && substr($2, length($2) - 4) == port { print $10 }' /proc/net/tcp /proc/net/tcp6 2>/dev/null)
		[[ -n $inodes ]] || return 1
		for i in $inodes; do
			[[ -n ${mine[$i]:-} ]] || return 1
		done
	done
}

# ready COMPONENT: the component answers as it should, on ports of its own.
ready() {
	local c=$1
	owns_ports "$c" || return 1
	case $(comp_kind "$c") in
	nats) [[ $(http_status "http://127.0.0.1:$(port_http "$c")/healthz") == 200 ]] ;;
	mysql) [[ -n ${MYSQLADMIN:-} ]] && "$MYSQLADMIN" --no-defaults "--socket=$STATE/mysql/mysqld.sock" -uroot --connect-timeout=2 ping >/dev/null 2>&1 ;;
	nginx) chat_ping "$(port_client nginx)" && ws_ping "$(port_ws nginx)" ;;
	prometheus) [[ $(http_status "http://127.0.0.1:$(port_http prometheus)/-/ready") == 200 ]] ;;
	*) [[ $(http_status "http://127.0.0.1:$(port_http "$c")/readyz") == 200 ]] ;;
	esac
}

# wait_ready COMPONENT...: until each is ready, TIMEOUT seconds at most;
# a component that exits or stays unready fails with its log's tail.
wait_ready() {
	local c deadline pending
	deadline=$((SECONDS + TIMEOUT))
	pending=("$@")
	while ((${#pending[@]})); do
		local next=()
		for c in "${pending[@]}"; do
			if ! running "$c"; then
				say "$c exited while starting"
				tail_log "$c"
				return 1
			fi
			ready "$c" || next+=("$c")
		done
		pending=("${next[@]}")
		((${#pending[@]})) || break
		if ((SECONDS >= deadline)); then
			for c in "${pending[@]}"; do
				say "$c is not ready after ${TIMEOUT}s"
				tail_log "$c"
			done
			return 1
		fi
		sleep 0.2
	done
}

# wait_routes: every running NATS node has routes to every other running one.
wait_routes() {
	local deadline c want have ok nodes=()
	for ((c = 1; c <= 9; c++)); do running "nats-$c" && nodes+=("nats-$c"); done
	want=$((${#nodes[@]} - 1))
	deadline=$((SECONDS + TIMEOUT))
	while :; do
		ok=1
		for c in "${nodes[@]}"; do
			have=$(nats_peers "$c")
			((have >= want)) || ok=0
		done
		((ok)) && return 0
		if ((SECONDS >= deadline)); then
			for c in "${nodes[@]}"; do
				say "$c has routes to $(nats_peers "$c") of $want other nodes"
				tail_log "$c"
			done
			return 1
		fi
		sleep 0.2
	done
}

# -------------------------------------------------------------- installing

APT_PKGS=()
need_pkg() { APT_PKGS+=("$@"); }

apt_install() {
	((${#APT_PKGS[@]})) || return 0
	local sudo=() policy=''
	if ((EUID != 0)); then
		command -v sudo >/dev/null || die "missing packages; as root run: apt-get install ${APT_PKGS[*]}"
		sudo=(sudo)
	fi
	command -v apt-get >/dev/null || die "missing: ${APT_PKGS[*]} (and no apt-get to install them)"
	say "installing with apt-get: ${APT_PKGS[*]} (their system services are not started)"
	mkdir -p "$LOGS"
	# Keep the packages' own services (nginx on :80, mariadb on :3306) from
	# starting during the install: invoke-rc.d and deb-systemd-invoke ask
	# policy-rc.d first.
	if ((EUID == 0)) && [[ ! -e /usr/sbin/policy-rc.d ]]; then
		policy=/usr/sbin/policy-rc.d
		TEMP_POLICY=$policy
		printf '#!/bin/sh\n# natter cluster.sh: temporary, during apt-get install\nexit 101\n' >"$policy"
		chmod 755 "$policy"
	fi
	local rc=0
	{
		"${sudo[@]}" apt-get update -q &&
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${APT_PKGS[@]}"
	} >>"$LOGS/apt.log" 2>&1 || rc=$?
	if [[ -n $policy ]]; then
		rm -f "$policy"
		TEMP_POLICY=''
	fi
	if ((rc)); then
		say "apt-get failed; last lines of $LOGS/apt.log:"
		tail -n 20 "$LOGS/apt.log" >&2
		exit 1
	fi
	APT_PKGS=()
}

first_cmd() { # the first of the commands found (on PATH or /usr/sbin)
	local c
	for c in "$@"; do
		if command -v "$c" >/dev/null; then
			command -v "$c"
			return 0
		fi
		[[ -x /usr/sbin/$c ]] && echo "/usr/sbin/$c" && return 0
	done
	return 1
}

# find_tools: set MYSQLD, MYSQL_INSTALL_DB, MYSQL_CLI, MYSQLADMIN, NGINX,
# NGINX_STREAM_MODULE; with "install", apt-get what is missing first.
find_tools() {
	local install=${1:-}
	MYSQLD=$(first_cmd mariadbd mysqld) || MYSQLD=''
	MYSQL_INSTALL_DB=$(first_cmd mariadb-install-db mysql_install_db) || MYSQL_INSTALL_DB=''
	MYSQL_CLI=$(first_cmd mariadb mysql) || MYSQL_CLI=''
	MYSQLADMIN=$(first_cmd mariadb-admin mysqladmin) || MYSQLADMIN=''
	NGINX=$(first_cmd nginx) || NGINX=''
	PROMETHEUS=$(first_cmd prometheus) || PROMETHEUS=''
	[[ $install == install ]] || return 0

	[[ -n $MYSQLD && -n $MYSQL_INSTALL_DB ]] || need_pkg mariadb-server
	[[ -n $MYSQL_CLI && -n $MYSQLADMIN ]] || need_pkg mariadb-client
	[[ -n $NGINX ]] || need_pkg nginx libnginx-mod-stream
	[[ -n $PROMETHEUS ]] || need_pkg prometheus
	command -v curl >/dev/null || need_pkg curl ca-certificates
	command -v setsid >/dev/null || need_pkg util-linux
	if [[ -n $NGINX ]] && ! stream_static && [[ -z $(stream_module) ]]; then
		need_pkg libnginx-mod-stream
	fi
	apt_install
	find_tools
	[[ -n $MYSQLD && -n $MYSQL_INSTALL_DB && -n $MYSQL_CLI && -n $MYSQLADMIN ]] || die "no mariadbd/mariadb-install-db/mariadb/mariadb-admin after installing"
	[[ -n $NGINX ]] || die "no nginx after installing"
	[[ -n $PROMETHEUS ]] || die "no prometheus after installing (apt-get install prometheus)"
	stream_static || [[ -n $(stream_module) ]] || die "nginx has no stream module (apt-get install libnginx-mod-stream)"
}

stream_static() { "$NGINX" -V 2>&1 | grep -qE -- '--with-stream( |$)'; }
stream_module() {
	local d
	for d in /usr/lib/nginx/modules /usr/lib64/nginx/modules /usr/share/nginx/modules /etc/nginx/modules; do
		[[ -f $d/ngx_stream_module.so ]] && echo "$d/ngx_stream_module.so" && return 0
	done
	return 0
}

version_ge() { [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1) == "$2" ]]; }

find_go() {
	if command -v go >/dev/null; then
		command -v go
	elif [[ -x /usr/local/go/bin/go ]]; then
		echo /usr/local/go/bin/go
	else
		return 1
	fi
}

# find_nats_server: NATTER_NATS_SERVER, else nats-server on PATH if at least
# NATS_MIN_VERSION, else one built from the version tools/go.mod requires
# (kept in deployments/local/.cache).
find_nats_server() {
	if [[ -n ${NATTER_NATS_SERVER:-} ]]; then
		[[ -x $NATTER_NATS_SERVER ]] || die "NATTER_NATS_SERVER=$NATTER_NATS_SERVER is not executable"
		NATS_BIN=$NATTER_NATS_SERVER
		return
	fi
	local path ver modver out gobin
	if path=$(first_cmd nats-server); then
		ver=$("$path" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1) || ver=''
		if [[ -n $ver ]] && version_ge "$ver" "$NATS_MIN_VERSION"; then
			NATS_BIN=$path
			return
		fi
		say "$path is v${ver:-?}, older than v$NATS_MIN_VERSION: using one built from tools/go.mod"
	fi
	modver=$(awk '$1 == "github.com/nats-io/nats-server/v2" { print $2; exit }' "$ROOT/tools/go.mod")
	[[ -n $modver ]] || die "tools/go.mod does not require github.com/nats-io/nats-server/v2"
	out=$CACHE_DIR/nats-server-$modver
	if [[ ! -x $out ]]; then
		gobin=$(find_go) || die "no nats-server >= v$NATS_MIN_VERSION and no go to build one (set NATTER_NATS_SERVER)"
		say "building nats-server $modver into $out"
		mkdir -p "$CACHE_DIR"
		(cd "$ROOT/tools" && "$gobin" build -o "$out.tmp.$$" github.com/nats-io/nats-server/v2) ||
			die "building nats-server failed"
		mv "$out.tmp.$$" "$out"
	fi
	NATS_BIN=$out
}

find_natter_bins() {
	local b missing=0
	for b in natter natter-gateway natter-user natter-offline natter-friend natter-group; do
		[[ -x $BIN_DIR/$b ]] || missing=1
	done
	((missing)) || return 0
	[[ $BIN_DIR == "$ROOT/bin" ]] || die "natter binaries missing in NATTER_BIN=$BIN_DIR"
	local gobin
	gobin=$(find_go) || die "natter binaries missing in $BIN_DIR and no go to build them"
	if ! command -v make >/dev/null; then
		need_pkg make
		apt_install
	fi
	say "building the natter binaries (make build)"
	make -C "$ROOT" build GO="$gobin" >&2 || die "make build failed"
}

# ----------------------------------------------------------------- configs

fill() { # fill TEMPLATE KEY=VALUE... : replace {{KEY}} with VALUE (multi-line ok)
	local tpl=$1 text kv
	shift
	text=$(<"$tpl")
	for kv in "$@"; do
		text=${text//"{{${kv%%=*}}}"/${kv#*=}}
	done
	printf '%s\n' "$text"
}

write_nats_conf() {
	local c=$1 i routes=''
	mkdir -p "$STATE/nats"
	for ((i = 1; i <= NATS_NODES; i++)); do
		routes+="    nats-route://127.0.0.1:$(port_route "nats-$i")"$'\n'
	done
	cat >"$STATE/nats/$c.conf.tmp" <<EOF
# generated by deployments/local/cluster.sh
server_name: $c
listen: 127.0.0.1:$(port_client "$c")
http: 127.0.0.1:$(port_http "$c")

# Find dead clients and routes in ~15 s instead of the default ~4 min.
ping_interval: "5s"
ping_max: 3

# SIGUSR2 (cluster.sh kill $c USR2): stop accepting, wait the grace period,
# then move the clients off over the duration; they reconnect elsewhere.
lame_duck_grace_period: "5s"
lame_duck_duration: "30s"

cluster {
  name: natter-local-$BASE_PORT
  listen: 127.0.0.1:$(port_route "$c")
  # Every node, itself included (ignored): any two nodes can start first.
  routes: [
$routes  ]
}
EOF
	mv "$STATE/nats/$c.conf.tmp" "$STATE/nats/$c.conf"
}

write_nginx_conf() {
	local i servers='' ws_servers='' mods='' nofile
	mkdir -p "$STATE/nginx/tmp"
	for ((i = 1; i <= GATEWAYS; i++)); do
		servers+="    server 127.0.0.1:$(port_client "gateway-$i") weight=1 max_fails=3 fail_timeout=10s;"$'\n'
		ws_servers+="    server 127.0.0.1:$(port_ws "gateway-$i") weight=1 max_fails=0;"$'\n'
	done
	stream_static || mods="load_module $(stream_module);"
	# Descriptors: as many as the hard limit allows (raising it needs
	# CAP_SYS_RESOURCE), 65536 at most; two per proxied connection.
	nofile=$(ulimit -Hn)
	[[ $nofile =~ ^[0-9]+$ ]] && ((nofile <= 65536)) || nofile=65536
	fill "$NGINX_TEMPLATES/natter-stream.conf.template" \
		"LISTEN=127.0.0.1:$(port_client nginx)" \
		"GATEWAY_SERVERS=${servers%$'\n'}" \
		CONNECT_TIMEOUT=1s PROXY_TIMEOUT=90s \
		"ACCESS_LOG=$LOGS/nginx-access.log" >"$STATE/nginx/natter-stream.conf"
	fill "$NGINX_TEMPLATES/natter-websocket.conf.template" \
		"LISTEN=127.0.0.1:$(port_ws nginx)" \
		"GATEWAY_SERVERS=${ws_servers%$'\n'}" \
		CONNECT_TIMEOUT=1s READ_TIMEOUT=1h \
		"ACCESS_LOG=$LOGS/nginx-ws-access.log" >"$STATE/nginx/natter-websocket.conf"
	fill "$NGINX_TEMPLATES/nginx.conf.template" \
		"LOAD_MODULES=$mods" \
		"PREFIX=$STATE/nginx" \
		"PID_FILE=$STATE/nginx/nginx.pid" \
		"ERROR_LOG=$(log_file nginx)" \
		WORKER_SHUTDOWN_TIMEOUT=30s \
		"WORKER_RLIMIT_NOFILE=$nofile" \
		"WORKER_CONNECTIONS=$((nofile / 2))" \
		"STREAM_CONF=$STATE/nginx/natter-stream.conf" \
		"HTTP_CONF=$STATE/nginx/natter-websocket.conf" >"$STATE/nginx/nginx.conf"
	local out
	if ! out=$("$NGINX" -t -q -p "$STATE/nginx/" -e "$(log_file nginx)" -c "$STATE/nginx/nginx.conf" -g 'daemon off;' 2>&1); then
		die "nginx -t rejects $STATE/nginx/nginx.conf: $out"
	fi
}

# write_prometheus_conf: Prometheus scrapes every natter process of the
# configured cluster (the --http ports), job natter-<kind>, and evaluates
# deployments/prometheus/natter-rules.yml.
write_prometheus_conf() {
	local kind i n targets scrape=''
	mkdir -p "$STATE/prometheus/data"
	for kind in gateway "${SERVICES[@]}"; do
		targets=()
		n=$INSTANCES
		[[ $kind == gateway ]] && n=$GATEWAYS
		for ((i = 1; i <= n; i++)); do targets+=("'127.0.0.1:$(port_http "$kind-$i")'"); done
		scrape+="  - job_name: natter-$kind"$'\n'"    static_configs:"$'\n'"      - targets: [$(
			IFS=,
			echo "${targets[*]}"
		)]"$'\n'
	done
	fill "$ROOT/deployments/prometheus/prometheus.yml.template" \
		"RULES=$ROOT/deployments/prometheus/natter-rules.yml" \
		"SCRAPE_CONFIGS=${scrape%$'\n'}" >"$STATE/prometheus/prometheus.yml"
	if command -v promtool >/dev/null; then
		local out
		out=$(promtool check config "$STATE/prometheus/prometheus.yml" 2>&1) || die "promtool rejects $STATE/prometheus/prometheus.yml: $out"
	fi
}

# init_mysql: a fresh data directory the first time.
init_mysql() {
	local d=$STATE/mysql
	mkdir -p "$d/tmp"
	[[ -d $d/data/mysql ]] && return 0
	say "initializing the MariaDB data directory $d/data"
	rm -rf "$d/data"
	local args=(--no-defaults "--datadir=$d/data" --auth-root-authentication-method=normal --skip-test-db)
	((EUID == 0)) && args+=(--user=root)
	if ! "$MYSQL_INSTALL_DB" "${args[@]}" >>"$(log_file mysql)" 2>&1; then
		tail_log mysql
		rm -rf "$d/data"
		die "mariadb-install-db failed"
	fi
}

# mysql_setup: the natter user (all privileges, so tests can create and
# drop their own databases) and the natter database.
mysql_setup() {
	mysql_client -e "
		CREATE USER IF NOT EXISTS '$MYSQL_USER'@'127.0.0.1' IDENTIFIED BY '$MYSQL_PASSWORD';
		CREATE USER IF NOT EXISTS '$MYSQL_USER'@'localhost' IDENTIFIED BY '$MYSQL_PASSWORD';
		GRANT ALL PRIVILEGES ON *.* TO '$MYSQL_USER'@'127.0.0.1';
		GRANT ALL PRIVILEGES ON *.* TO '$MYSQL_USER'@'localhost';
		CREATE DATABASE IF NOT EXISTS \`$MYSQL_DB\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;" ||
		die "creating the natter user and database failed"
}

# ---------------------------------------------------------------- starting

# A component's ports are free (or it is ours and running).
check_ports() {
	local c p busy=()
	for c in "$@"; do
		running "$c" && continue
		for p in $(comp_ports "$c"); do
			port_open "$p" && busy+=("127.0.0.1:$p ($c)")
		done
	done
	((${#busy[@]} == 0)) && return 0
	((${#busy[@]} <= 4)) || busy=("${busy[@]:0:4}" "and $((${#busy[@]} - 4)) more")
	die "ports in use by something else: ${busy[*]}; pick another NATTER_CLUSTER_BASE_PORT"
}

comp_ports() {
	local c=$1
	case $(comp_kind "$c") in
	nats) echo "$(port_client "$c") $(port_route "$c") $(port_http "$c")" ;;
	mysql) port_client "$c" ;;
	nginx) echo "$(port_client "$c") $(port_ws "$c")" ;;
	prometheus) port_http "$c" ;;
	gateway) echo "$(port_client "$c") $(port_ws "$c") $(port_http "$c")" ;;
	*) port_http "$c" ;;
	esac
}

# start_comps COMPONENT...: start those not running, wait for all.
start_comps() {
	local c started=()
	for c in "$@"; do
		if running "$c"; then
			continue
		fi
		case $(comp_kind "$c") in
		nats) write_nats_conf "$c" ;;
		mysql) init_mysql ;;
		nginx) write_nginx_conf ;;
		prometheus) write_prometheus_conf ;;
		esac
		start_proc "$c"
		started+=("$c")
	done
	((${#started[@]})) || return 0
	say "started ${started[*]}; waiting until ready"
	wait_ready "$@" || return 1
	case $(comp_kind "$1") in
	nats) wait_routes || return 1 ;;
	mysql) mysql_setup ;;
	esac
}

# prepare: settings, tools, binaries, for commands that start something.
prepare() {
	if [[ -d $STATE && ! -f $CONF ]] && [[ -n $(ls -A -- "$STATE") ]]; then
		die "$STATE is not empty and not a cluster state directory (no cluster.conf); pick another NATTER_CLUSTER_DIR"
	fi
	load_settings
	local c any=0
	for c in $(all_comps) $(started_comps); do running "$c" && any=1 && break; done
	if ((any)) && settings_changed; then
		say "the cluster in $STATE runs with these settings:"
		sed 's/^/    /' "$CONF" >&2
		die "other settings from the environment; run \`$0 down\` first"
	fi
	if ((any)) && [[ -n $NATS_BIN && -x $NATS_BIN ]]; then
		:
	else
		find_nats_server
	fi
	find_tools install
	find_natter_bins
}

cmd_up() {
	local keep=0
	[[ ${1:-} == --keep ]] && keep=1
	local t0=$SECONDS
	prepare
	local comps
	mapfile -t comps < <(all_comps)
	check_ports "${comps[@]}"
	save_settings
	local nats=() svcs=() gws=() s i
	for ((i = 1; i <= NATS_NODES; i++)); do nats+=("nats-$i"); done
	for s in "${SERVICES[@]}"; do for ((i = 1; i <= INSTANCES; i++)); do svcs+=("$s-$i"); done; done
	for ((i = 1; i <= GATEWAYS; i++)); do gws+=("gateway-$i"); done
	UP_KEEP=$keep UP_STARTING=1
	start_comps "${nats[@]}" || exit 1
	start_comps mysql || exit 1
	start_comps "${svcs[@]}" || exit 1
	start_comps "${gws[@]}" || exit 1
	start_comps nginx || exit 1
	start_comps prometheus || exit 1
	UP_STARTING=0
	print_table
	say "cluster up in $((SECONDS - t0))s; clients connect to 127.0.0.1:$(port_client nginx) (nginx; WebSocket and the web page: http://127.0.0.1:$(port_ws nginx)/); Prometheus (metrics, alerts): http://127.0.0.1:$(port_http prometheus)/"
}

cmd_down() {
	local purge=0
	[[ ${1:-} == --purge ]] && purge=1
	if [[ ! -d $STATE ]]; then
		say "nothing in $STATE"
		return 0
	fi
	load_settings
	local c tier=() last='' comps
	mapfile -t comps < <(started_comps)
	# Stop tier by tier (all of a tier at once): nginx, gateways, services,
	# NATS, MySQL.
	for c in "${comps[@]}"; do
		if [[ -n $last && $(comp_tier "$c") != "$last" ]]; then
			stop_comps "${tier[@]}"
			tier=()
		fi
		tier+=("$c")
		last=$(comp_tier "$c")
	done
	((${#tier[@]} == 0)) || stop_comps "${tier[@]}"
	if ((purge)); then
		# Only what cluster.sh creates: never a directory that is not ours.
		if [[ -f $CONF ]]; then
			say "deleting $STATE"
			rm -rf -- "$RUN" "$LOGS" "$STATE/nats" "$STATE/mysql" "$STATE/nginx" "$CONF"
			rmdir -- "$STATE" 2>/dev/null || say "kept $STATE: it holds files cluster.sh did not make"
		else
			say "not deleting $STATE: no cluster.conf, not a cluster state directory"
		fi
	fi
	say "cluster down"
}

comp_tier() {
	case $(comp_kind "$1") in
	nginx) echo 0 ;; gateway) echo 1 ;; nats) echo 3 ;; mysql) echo 4 ;; *) echo 2 ;;
	esac
}

need_comp() {
	[[ -n ${1:-} ]] || die "which component? (nats-1, mysql, user-1, gateway-1, nginx, ...)"
	valid_comp "$1" || die "unknown component $1 (nats-N, mysql, user-N, offline-N, friend-N, group-N, gateway-N, nginx)"
}

cmd_start() {
	local c=${1:-}
	need_comp "$c"
	prepare
	if running "$c"; then
		say "$c is already running (pid $(comp_pid "$c"))"
		return 0
	fi
	local added=0
	case $(comp_kind "$c") in
	gateway | nats)
		local idx
		idx=$(comp_index "$c")
		if [[ $(comp_kind "$c") == gateway ]] && ((idx > GATEWAYS)); then
			GATEWAYS=$idx added=1
			say "gateways: now $GATEWAYS behind nginx"
		fi
		if [[ $(comp_kind "$c") == nats ]] && ((idx > NATS_NODES)); then
			# Its routes list every node; the running ones accept the route
			# and gossip it, and clients learn the new node from INFO.
			NATS_NODES=$idx
			say "NATS nodes: now $NATS_NODES"
		fi
		;;
	*)
		if [[ $(comp_kind "$c") != mysql && $(comp_kind "$c") != nginx ]] && ! running mysql; then
			say "warning: mysql is not running; $c will not get ready without it"
		fi
		;;
	esac
	check_ports "$c"
	save_settings
	start_comps "$c" || exit 1
	if ((added)) && running nginx; then
		reload_nginx
	fi
	print_row_header
	print_row "$c"
}

cmd_stop() {
	need_comp "${1:-}"
	load_settings
	stop_comps "$1"
}

cmd_kill() {
	local c=${1:-} sig=${2:-TERM}
	need_comp "$c"
	sig=${sig#SIG}
	load_settings
	local pid
	pid=$(comp_pid "$c") || die "$c is not running"
	kill -l "$sig" >/dev/null 2>&1 || die "unknown signal $sig"
	say "sending SIG$sig to $c (pid $pid)"
	signal_comp "$c" "$sig"
	case $sig in
	TERM | INT | QUIT | KILL | 15 | 2 | 3 | 9)
		((KILL_WAIT > 0)) || return 0
		if wait_gone "$KILL_WAIT" "$c"; then
			say "$c exited"
		else
			say "$c still runs after ${KILL_WAIT}s"
			return 1
		fi
		;;
	esac
}

cmd_pid() {
	need_comp "${1:-}"
	load_settings
	comp_pid "$1" || {
		say "$1 is not running"
		return 1
	}
}

cmd_log() {
	need_comp "${1:-}"
	log_file "$1"
}

reload_nginx() {
	find_tools
	write_nginx_conf
	say "reloading nginx (old workers keep their connections up to 30s)"
	signal_comp nginx HUP
}

cmd_reload_nginx() {
	load_settings
	running nginx || die "nginx is not running"
	reload_nginx
}

cmd_env() {
	load_settings
	local i c list=() urls=()
	kv() { printf '%s=%s\n' "$1" "$2"; }
	kvq() { printf "%s='%s'\n" "$1" "$2"; } # values with ( ) for shells
	kv NATTER_CLUSTER_DIR "$STATE"
	kv NATTER_CLUSTER_BASE_PORT "$BASE_PORT"
	kv NATTER_CLUSTER_ADDR "127.0.0.1:$(port_client nginx)"
	kv NATTER_CLUSTER_WS_ADDR "127.0.0.1:$(port_ws nginx)"
	kv NATTER_CLUSTER_WS_URL "ws://127.0.0.1:$(port_ws nginx)/ws"
	kv NATTER_CLUSTER_WEB_URL "http://127.0.0.1:$(port_ws nginx)/"
	kv NATTER_CLUSTER_PROMETHEUS_URL "http://127.0.0.1:$(port_http prometheus)/"
	for ((i = 1; i <= GATEWAYS; i++)); do list+=("127.0.0.1:$(port_client "gateway-$i")"); done
	kv NATTER_CLUSTER_GATEWAY_ADDRS "$(
		IFS=,
		echo "${list[*]}"
	)"
	list=()
	for ((i = 1; i <= GATEWAYS; i++)); do list+=("127.0.0.1:$(port_ws "gateway-$i")"); done
	kv NATTER_CLUSTER_GATEWAY_WS_ADDRS "$(
		IFS=,
		echo "${list[*]}"
	)"
	kv NATTER_CLUSTER_NATS_URLS "$(nats_urls 1)"
	for ((i = 1; i <= NATS_NODES; i++)); do urls+=("http://127.0.0.1:$(port_http "nats-$i")"); done
	kv NATTER_CLUSTER_NATS_MONITOR_URLS "$(
		IFS=,
		echo "${urls[*]}"
	)"
	kvq NATTER_CLUSTER_MYSQL_DSN "$(mysql_dsn)"
	kvq NATTER_CLUSTER_MYSQL_SERVER_DSN "$MYSQL_USER:$MYSQL_PASSWORD@tcp(127.0.0.1:$(port_client mysql))/"
	kv NATTER_CLUSTER_MYSQL_ADDR "127.0.0.1:$(port_client mysql)"
	kv NATTER_CLUSTER_MYSQL_USER "$MYSQL_USER"
	kv NATTER_CLUSTER_MYSQL_PASSWORD "$MYSQL_PASSWORD"
	kv NATTER_CLUSTER_MYSQL_DATABASE "$MYSQL_DB"
	kv NATTER_CLUSTER_MYSQL_SOCKET "$STATE/mysql/mysqld.sock"
	list=()
	for c in $(all_comps); do
		local key=NATTER_CLUSTER_${c//-/_}
		key=${key^^}
		case $(comp_kind "$c") in
		nats)
			kv "${key}_URL" "nats://127.0.0.1:$(port_client "$c")"
			kv "${key}_MONITOR" "http://127.0.0.1:$(port_http "$c")"
			;;
		gateway)
			kv "${key}_ADDR" "127.0.0.1:$(port_client "$c")"
			kv "${key}_WS" "127.0.0.1:$(port_ws "$c")"
			kv "${key}_HTTP" "127.0.0.1:$(port_http "$c")"
			list+=("127.0.0.1:$(port_http "$c")")
			;;
		mysql | nginx) ;;
		*)
			kv "${key}_HTTP" "127.0.0.1:$(port_http "$c")"
			list+=("127.0.0.1:$(port_http "$c")")
			;;
		esac
	done
	kv NATTER_CLUSTER_HTTP_ADDRS "$(
		IFS=,
		echo "${list[*]}"
	)"
	kv NATTER_CLUSTER_COMPONENTS "$(all_comps | paste -sd, -)"
	kv NATTER_CLUSTER_LOG_DIR "$LOGS"
}

# ------------------------------------------------------------------- table

print_row_header() {
	printf '%-10s %-8s %-8s %-16s %-16s %-16s %s\n' COMPONENT PID STATE ADDRESS WEBSOCKET HTTP LOG
}

print_row() {
	local c=$1 pid state addr='-' ws='-' http='-'
	if pid=$(comp_pid "$c"); then
		if ready "$c"; then state=ready; else state=running; fi
	else
		pid='-' state=stopped
	fi
	case $(comp_kind "$c") in
	nats) addr="127.0.0.1:$(port_client "$c")" http="127.0.0.1:$(port_http "$c")" ;;
	mysql) addr="127.0.0.1:$(port_client "$c")" ;;
	nginx) addr="127.0.0.1:$(port_client "$c")" ws="127.0.0.1:$(port_ws "$c")" ;;
	gateway) addr="127.0.0.1:$(port_client "$c")" ws="127.0.0.1:$(port_ws "$c")" http="127.0.0.1:$(port_http "$c")" ;;
	*) http="127.0.0.1:$(port_http "$c")" ;;
	esac
	printf '%-10s %-8s %-8s %-16s %-16s %-16s %s\n' "$c" "$pid" "$state" "$addr" "$ws" "$http" "$(log_file "$c")"
	[[ $state == ready ]]
}

# print_table: every configured component and any extra one started; exit
# status 0 when all of them are ready.
print_table() {
	local c ok=0 comps=()
	find_tools
	mapfile -t comps < <(all_comps)
	for c in $(started_comps); do [[ " ${comps[*]} " == *" $c "* ]] || comps+=("$c"); done
	print_row_header
	for c in "${comps[@]}"; do
		print_row "$c" || ok=1
	done
	echo
	echo "clients:    127.0.0.1:$(port_client nginx) (nginx -> gateways)   e.g. $BIN_DIR/natter chat --addr 127.0.0.1:$(port_client nginx)"
	echo "browsers:   http://127.0.0.1:$(port_ws nginx)/ (web page; WebSocket ws://127.0.0.1:$(port_ws nginx)/ws, nginx -> gateways)"
	echo "NATS:       $(nats_urls 1)  (monitoring: http://127.0.0.1:$(port_http nats-1)/routez ...)"
	echo "MySQL:      $(mysql_dsn)  (socket $STATE/mysql/mysqld.sock)"
	echo "Prometheus: http://127.0.0.1:$(port_http prometheus)/  (alerts: /alerts; rules: deployments/prometheus/natter-rules.yml)"
	echo "state dir:  $STATE"
	return "$ok"
}

cmd_status() {
	load_settings
	if [[ ! -f $CONF ]]; then
		say "no cluster in $STATE"
		return 3
	fi
	print_table || return 3
}

# on_exit: undo a half-done install or `up` when the script fails or is
# interrupted.
TEMP_POLICY='' UP_STARTING=0 UP_KEEP=0
on_exit() {
	local rc=$?
	[[ -z $TEMP_POLICY ]] || rm -f "$TEMP_POLICY"
	if ((rc != 0 && UP_STARTING)); then
		UP_STARTING=0
		if ((UP_KEEP)); then
			say "up failed; the cluster is left as it is (--keep): $0 status; $0 down"
		else
			say "up failed; stopping the cluster (logs stay in $LOGS; up --keep leaves it running)"
			cmd_down >/dev/null || true
		fi
	fi
	exit "$rc"
}

main() {
	trap on_exit EXIT
	local cmd=${1:-help}
	shift || true
	case $cmd in
	up) cmd_up "$@" ;;
	down) cmd_down "$@" ;;
	status) cmd_status ;;
	env) cmd_env ;;
	start) cmd_start "$@" ;;
	stop) cmd_stop "$@" ;;
	kill) cmd_kill "$@" ;;
	pid) cmd_pid "$@" ;;
	log) cmd_log "$@" ;;
	reload-nginx) cmd_reload_nginx ;;
	help | -h | --help) usage ;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

main "$@"
