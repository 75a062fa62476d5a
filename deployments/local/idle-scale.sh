#!/usr/bin/env bash
# deployments/local/idle-scale.sh: hold many idle logged-in connections on
# one machine, past the per-process open-file limit, and report what each
# costs. It starts `natter serve` (the services and NATS, which the gateways
# join over loopback), GATEWAYS natter-gateway processes, and as many
# `natter bench --workload idle` processes, each holding CONNS/GATEWAYS
# connections to its own gateway from its own loopback source address
# (127.0.0.2, 127.0.0.3, ...), then prints each gateway's resident memory per
# connection, the login rates and the pings answered, and stops everything.
#
#   deployments/local/idle-scale.sh [CONNS [GATEWAYS]]     (default 100000 6)
#
# Environment: NATTER_BIN (default ./bin), NATTER_SCALE_DIR (default a
# temporary directory, removed at the end unless it was given),
# NATTER_SCALE_HOLD (how long the connections are held, default 60s),
# NATTER_SCALE_PING (each connection's ping interval, default 30s),
# NATTER_SCALE_BASE_PORT (default 27000). Each process needs an open-file
# limit above its share of connections: the script raises its own soft limit
# to the hard limit (20,000 on the project's machines).
set -euo pipefail

conns=${1:-100000}
gateways=${2:-6}
bin=${NATTER_BIN:-./bin}
hold=${NATTER_SCALE_HOLD:-60s}
ping=${NATTER_SCALE_PING:-30s}
base=${NATTER_SCALE_BASE_PORT:-27000}
per=$(((conns + gateways - 1) / gateways))

for b in natter natter-gateway; do
	[ -x "$bin/$b" ] || { echo "idle-scale: $bin/$b is missing: run make build" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -le $((per + 100)) ]; then
	echo "idle-scale: $per connections per process need more than the open-file limit $(ulimit -n): use more gateways" >&2
	exit 1
fi

dir=${NATTER_SCALE_DIR:-}
keep=1
if [ -z "$dir" ]; then
	dir=$(mktemp -d)
	keep=0
fi
mkdir -p "$dir/data"
pids=()
# On loopback every packet of every connection, both ends, passes the
# per-CPU receive backlog (net.core.netdev_max_backlog, 1,000 packets by
# default). With 100,000 connections and both CPUs busy with the logins,
# their keepalive probes overflowed it (/proc/net/softnet_stat, second
# column), and the kernel aborted the connections whose probes were
# dropped three times ("read: connection timed out" in the gateways' logs,
# TcpExtTCPAbortOnTimeout): 40,717 of 100,000. Raised while the script
# runs, when it may be (root).
backlog=/proc/sys/net/core/netdev_max_backlog
old_backlog=
if [ -w "$backlog" ] && [ "$(cat "$backlog")" -lt 10000 ]; then
	old_backlog=$(cat "$backlog")
	echo 10000 >"$backlog"
	echo "idle-scale: net.core.netdev_max_backlog $old_backlog -> 10000 while it runs"
fi

# shellcheck disable=SC2317 # called by the trap
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ "$keep" = 1 ] || rm -rf "$dir"
	if [ -n "$old_backlog" ]; then echo "$old_backlog" >"$backlog"; fi
}
trap cleanup EXIT

# The services and NATS.
"$bin/natter" serve --listen "127.0.0.1:$base" --ws-listen '' --nats-listen 127.0.0.1:$((base + 1)) \
	--data "$dir/data" --bcrypt-cost 4 --flood-rate 100000 --flood-burst 100000 --log-level warn \
	>"$dir/serve.log" 2>&1 &
pids+=($!)
sleep 2

# The gateways, and a load tool for each.
gwpids=()
for i in $(seq 1 "$gateways"); do
	"$bin/natter-gateway" --nats "nats://127.0.0.1:$((base + 1))" --listen "127.0.0.1:$((base + 10 + i))" \
		--http "127.0.0.1:$((base + 30 + i))" --log-level "${NATTER_SCALE_GATEWAY_LOG:-warn}" >"$dir/gateway-$i.log" 2>&1 &
	pids+=($!)
	gwpids+=($!)
done
sleep 2
echo "idle-scale: $conns connections over $gateways gateways ($per each), held $hold, a ping every $ping each"
benches=()
for i in $(seq 1 "$gateways"); do
	"$bin/natter" bench --workload idle --addr "127.0.0.1:$((base + 10 + i))" --source-addrs "127.0.0.$((i + 1))" \
		--conns "$per" --gateway-pid "${gwpids[$((i - 1))]}" --duration "$hold" --ping-interval "$ping" \
		--setup-concurrency 32 --timeout 60m --quiet --json --out "$dir/bench-$i.json" >"$dir/bench-$i.log" 2>&1 &
	benches+=($!)
done
rc=0
for p in "${benches[@]}"; do wait "$p" || rc=1; done
for i in $(seq 1 "$gateways"); do
	# Why the gateways closed connections, if any did.
	curl -s "http://127.0.0.1:$((base + 30 + i))/metrics" | grep '^natter_gateway_connections_closed_total' |
		grep -v ' 0$' | sed "s/^/gateway $i: /" || true
done

python3 - "$dir" "$gateways" <<'PY'
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
conns = answered = pings = lost = 0
rates, grown = [], 0.0
print("gateway  connections  logins/s  pings answered  broke  RSS/conn connected  RSS/conn at end")
for i in range(1, n + 1):
    r = json.load(open(f"{d}/bench-{i}.json"))
    c = r.get("established", 0)
    g = r.get("gateway_rss") or {}
    before, conn_b, end_b = g.get("before_bytes", 0), g.get("connected_bytes", 0), g.get("end_bytes", 0)
    per_conn = (conn_b - before) / c if c else 0
    per_end = (end_b - before) / c if c else 0
    print(f"{i:7}  {c:11}  {r.get('logins_per_s', 0):8.0f}  {r.get('pings_answered', 0):7}/{r.get('pings', 0):<7}  {r.get('conns_lost', 0):5}"
          f"  {per_conn:15.0f} B  {per_end:13.0f} B")
    conns += c; answered += r.get("pings_answered", 0); pings += r.get("pings", 0); lost += r.get("conns_lost", 0)
    grown += end_b - before
    rates.append(r.get("logins_per_s", 0))
print(f"all      {conns:11}  {sum(rates):8.0f}  {answered:7}/{pings:<7}  {lost:5}  {'':17}  {grown / max(conns, 1):13.0f} B")
PY
exit $rc
