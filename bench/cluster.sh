#!/usr/bin/env bash
# The scenarios whose targets name the distributed topology: starts
# scripts/cluster (release build; the machine's PostgreSQL, Redis and
# RabbitMQ) with its own databases and namespace, runs one loadgen
# scenario against it, stops it and drops what it made; then plots.
#
#   bench/cluster.sh [SCENARIO...]     default: sends history storm e2e
#
#   sends    acked sends/s into many rooms, then into one hot room
#   history  history pages of a room filled by SQL (bench/fill-history.sh)
#   storm    every client of gateway-1 reconnects and resumes after
#            `scripts/cluster restart gateway-1`
#   e2e      one room's members split over two gateways; send→receive
#            latency at the offered rate, then at RATE2 when SIZE=target
#
# Settings (environment):
#   SIZE        small (default; seconds each) or target (the sizes of the
#               targets in BENCHMARKS.md)
#   OUT         where the JSON results and PNG plots go (bench/results)
#   BUILD       1 (default): cargo build of loadgen and the services first
#   PROFILE     release (default) or debug: the build measured (CI runs
#               the small size on debug builds so that the tooling cannot
#               rot; its numbers mean nothing)
#   PLOT        1 (default): render each result with bench/plot.sh
#   BASE_PORT   18580: gateways from here, services above (scripts/cluster)
#   SOURCE_IPS  127.0.0.1-127.0.0.8: loadgen's --source-ips
#   DRAIN_WINDOW_S  1: how long a stopping gateway takes to close its
#               sockets (the product's default is 10; the storm measures
#               the reconnect, not the spreading)
#
# Nothing is pinned: the services, the databases and loadgen share the
# machine's cores, as they would on one host.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bench="$root/bench"
SIZE="${SIZE:-small}"
OUT="${OUT:-$bench/results}"
BUILD="${BUILD:-1}"
PROFILE="${PROFILE:-release}"
PLOT="${PLOT:-1}"
BASE_PORT="${BASE_PORT:-18580}"
SOURCE_IPS="${SOURCE_IPS:-127.0.0.1-127.0.0.8}"
DRAIN_WINDOW_S="${DRAIN_WINDOW_S:-1}"
target="${CARGO_TARGET_DIR:-$root/target}"
work="$target/bench/cluster"

case "$SIZE" in
    small)
        SENDS=(--senders 20 --rooms 10 --rate 20 --messages 50)
        HISTORY_FILL=10000
        HISTORY=(--queries 300 --concurrency 4)
        STORM=(--clients 500 --users 50)
        E2E=(--members 100 --senders 10 --rate 5 --messages 50)
        E2E2=()
        ;;
    target)
        SENDS=(--senders 100 --rooms 100 --rate 100 --messages 300)
        HISTORY_FILL=1000000
        HISTORY=(--queries 2000 --concurrency 4 --ws-rate 15)
        STORM=(--clients 19000 --users 200 --connect-rate 1000)
        E2E=(--members 1000 --senders 10 --rate 5 --messages 100 --drain-s 30)
        E2E2=(--members 1000 --senders 10 --rate 20 --messages 400 --drain-s 30)
        ;;
    *) echo "SIZE must be small or target" >&2; exit 2 ;;
esac
scenarios=("$@")
[ "${#scenarios[@]}" -gt 0 ] || scenarios=(sends history storm e2e)

# shellcheck source=bench/cluster-lib.sh
. "$bench/cluster-lib.sh"
mkdir -p "$OUT" "$work"
# A gateway of the storm holds 19,000 sockets.
ulimit -n "$(ulimit -Hn)"
bench_cluster "$work/state" GATEWAYS=2 BASE_PORT="$BASE_PORT" DRAIN_WINDOW_S="$DRAIN_WINDOW_S" \
    FRAMES_PER_SECOND=1000 FRAME_BURST=1000
trap bench_cluster_down EXIT

gateway1="http://127.0.0.1:$BASE_PORT"
gateway2="http://127.0.0.1:$((BASE_PORT + 1))"
loadgen() {
    "$loadgen_bin" "$@" --source-ips "$SOURCE_IPS"
}

for scenario in "${scenarios[@]}"; do
    echo "== $scenario ($SIZE, cluster)"
    name="$scenario-$SIZE-cluster"
    bench_cluster_up
    case "$scenario" in
        sends)
            loadgen sends --gateway "$gateway1" "${SENDS[@]}" --out "$OUT/$name.json"
            ;;
        history)
            room="$("$bench/fill-history.sh" "$database_base/bench_message_$suffix" "$HISTORY_FILL")"
            loadgen history --gateway "$gateway1" --room "$room" --fill 0 "${HISTORY[@]}" \
                --out "$OUT/$name.json"
            ;;
        storm)
            restart="$(printf '%q ' "${cluster[@]}" "$root/scripts/cluster" restart gateway-1)"
            loadgen storm --gateway "$gateway1" "${STORM[@]}" --restart-cmd "$restart" \
                --out "$OUT/$name.json"
            ;;
        e2e)
            loadgen e2e --gateway "$gateway1" --gateway "$gateway2" "${E2E[@]}" --out "$OUT/$name.json"
            if [ "${#E2E2[@]}" -gt 0 ]; then
                loadgen e2e --gateway "$gateway1" --gateway "$gateway2" "${E2E2[@]}" \
                    --out "$OUT/$name-2.json"
            fi
            ;;
        *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
    bench_cluster_down
    results=("$OUT/$name.json")
    [ "$scenario" = e2e ] && [ -f "$OUT/$name-2.json" ] && results+=("$OUT/$name-2.json")
    "$bench/check-result.py" "${results[@]}"
    [ "$PLOT" = 1 ] || continue
    plots=("$OUT/$name.json:cluster")
    [ -f "$OUT/$name-2.json" ] && [ "$scenario" = e2e ] && plots+=("$OUT/$name-2.json:cluster, higher rate")
    "$bench/plot.sh" "$OUT/$name.png" "${plots[@]}"
done
