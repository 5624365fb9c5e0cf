#!/usr/bin/env bash
# Many connections over many gateway processes: starts the scripts/cluster
# topology (release build; PostgreSQL, Redis and RabbitMQ of the machine)
# with GATEWAYS gateway processes, then LOADGENS `loadgen idle` processes at
# once, each opening its share of CONNECTIONS authenticated sockets spread
# over every gateway, from its own range of 127.0.0.x source addresses.
# Prints each process's result and the totals; writes the JSON results to
# OUT/connections-N-rR-pK.json (N connections, R per second per process,
# process K).
#
#   bench/connections.sh                       100,000 over 6 gateways
#   CONNECTIONS=12000 GATEWAYS=2 LOADGENS=2 bench/connections.sh
#
# Settings (environment): CONNECTIONS (100000), GATEWAYS (6), LOADGENS (6;
# one process holds at most ~19,990 sockets here), CONNECT_RATE (per
# process, 600/s: 3,600/s from six), USERS (accounts per process, 50), HOLD_S (10), BASE_PORT
# (18380: gateways on BASE_PORT.., services above), OUT (bench/results),
# BUILD (1: cargo build first), PROFILE (release; debug for CI's check that
# the tooling works).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
CONNECTIONS="${CONNECTIONS:-100000}"
GATEWAYS="${GATEWAYS:-6}"
LOADGENS="${LOADGENS:-6}"
CONNECT_RATE="${CONNECT_RATE:-600}"
USERS="${USERS:-50}"
HOLD_S="${HOLD_S:-10}"
BASE_PORT="${BASE_PORT:-18380}"
OUT="${OUT:-$root/bench/results}"
BUILD="${BUILD:-1}"
PROFILE="${PROFILE:-release}"
target="${CARGO_TARGET_DIR:-$root/target}"
work="$target/bench/connections"

# shellcheck source=bench/cluster-lib.sh
. "$root/bench/cluster-lib.sh"
mkdir -p "$OUT" "$work"
# Every gateway holds CONNECTIONS / GATEWAYS sockets: raise the soft limit
# to the hard one for the processes started from here.
ulimit -n "$(ulimit -Hn)"

bench_cluster "$work/cluster" GATEWAYS="$GATEWAYS" BASE_PORT="$BASE_PORT"
trap bench_cluster_down EXIT
bench_cluster_up

gateways=()
for i in $(seq 0 $((GATEWAYS - 1))); do
    gateways+=(--gateway "http://127.0.0.1:$((BASE_PORT + i))")
done
# The first CONNECTIONS % LOADGENS processes open one more, so that the
# shares add up to CONNECTIONS exactly.
per_process=$((CONNECTIONS / LOADGENS))
remainder=$((CONNECTIONS % LOADGENS))
pids=()
for k in $(seq 1 "$LOADGENS"); do
    # Eight source addresses per process, none shared between processes.
    first=$(((k - 1) * 8 + 1))
    share=$((per_process + (k <= remainder ? 1 : 0)))
    "$loadgen_bin" idle "${gateways[@]}" --connections "$share" \
        --users "$USERS" --hold-s "$HOLD_S" --connect-rate "$CONNECT_RATE" \
        --source-ips "127.0.0.$first-127.0.0.$((first + 7))" \
        --out "$OUT/connections-$CONNECTIONS-r$CONNECT_RATE-p$k.json" >"$work/loadgen-$k.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done

python3 - "$OUT" "$CONNECTIONS" "$LOADGENS" "$CONNECT_RATE" <<'EOF' || status=1
import json, sys
out, total, processes, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
connected = failed = dropped = 0
slowest = 0.0
for k in range(1, processes + 1):
    with open(f"{out}/connections-{total}-r{rate}-p{k}.json") as f:
        result = json.load(f)
    phase = result["phases"][0]
    counts, values = phase["counts"], phase["values"]
    connected += counts["connected"]
    failed += counts["connect_failed"]
    dropped += counts["dropped"]
    slowest = max(slowest, values["connect_s"])
    print(f"process {k}: connected {counts['connected']} of {counts['connections']}, "
          f"failed {counts['connect_failed']}, dropped {counts['dropped']}, "
          f"in {values['connect_s']:.1f} s ({values['connects_per_s']:.0f}/s)")
print(f"total: {connected} connected of {total}, {failed} failed, {dropped} dropped; "
      f"the slowest process took {slowest:.1f} s to open its share")
if connected != total or failed or dropped:
    sys.exit("not every connection was opened and held")
EOF
for k in $(seq 1 "$LOADGENS"); do
    [ "$status" = 0 ] || { echo "--- loadgen $k"; tail -n 5 "$work/loadgen-$k.log"; }
done
exit "$status"
