#!/usr/bin/env bash
# Runs loadgen scenarios against the build of `chat` and, where the
# scenario applies to it, against the Node.js baseline (bench/node-baseline)
# in the same run, with the same flags; then plots the results.
#
#   bench/run.sh [SCENARIO...]     default: idle fanout sends history storm
#
# The scenarios on the distributed topology (PostgreSQL, two gateways, e2e)
# are bench/cluster.sh's.
#
# Settings (environment):
#   SIZE      small (default), medium or target: the sizes of BENCHMARKS.md
#             (target: the one-process targets, frame rate raised)
#   OUT       where the JSON results and PNG plots go (bench/results)
#   PIN       1 (default): servers on CPU 0, loadgen on CPU 1 (taskset), so
#             that the load generator does not take the server's core; 0: no
#             pinning
#   BUILD     1 (default): cargo build -p chat -p loadgen first
#   PROFILE   release (default) or debug: the build measured (CI runs the
#             small size on debug builds so that the tooling cannot rot;
#             its numbers mean nothing)
#   PLOT      1 (default): render the results with bench/plot.sh
#   CHAT_PORT (18080), NODE_PORT (19090): where the servers listen
#   SOURCE_IPS (127.0.0.1-127.0.0.8): loadgen's --source-ips
#
# Every server it starts is stopped by its own pid when the scenario ends.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bench="$root/bench"
SIZE="${SIZE:-small}"
OUT="${OUT:-$bench/results}"
PIN="${PIN:-1}"
BUILD="${BUILD:-1}"
PROFILE="${PROFILE:-release}"
PLOT="${PLOT:-1}"
CHAT_PORT="${CHAT_PORT:-18080}"
NODE_PORT="${NODE_PORT:-19090}"
SOURCE_IPS="${SOURCE_IPS:-127.0.0.1-127.0.0.8}"
target="${CARGO_TARGET_DIR:-$root/target}"
work="$target/bench"
chat_bin="$target/$PROFILE/chat"
loadgen_bin="$target/$PROFILE/loadgen"

# Internal: the storm scenario's --restart-cmd. Stops the chat server whose
# pid is in $2 (it closes every socket with 1012), waits for it to exit,
# and starts it again on the same port and data directory.
if [ "${1:-}" = "_restart_chat" ]; then
    pid_file="$2" data_dir="$3"
    pid="$(cat "$pid_file")"
    kill -TERM "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then
        # A new server could not bind the port: fail the storm loudly.
        echo "chat ($pid) did not exit within 15 s of SIGTERM" >&2
        exit 1
    fi
    server_cpu=()
    [ "$PIN" = 1 ] && server_cpu=(taskset -c 0)
    nohup "${server_cpu[@]}" "$chat_bin" --listen "127.0.0.1:$CHAT_PORT" --data-dir "$data_dir" \
        >>"$data_dir/chat.log" 2>&1 &
    echo $! >"$pid_file"
    exit 0
fi

case "$SIZE" in
    small)
        IDLE=(--connections 1000 --users 50 --hold-s 5)
        FANOUT=(--members 100 --senders 10 --rate 10 --messages 100)
        SENDS=(--senders 50 --rooms 10 --rate 10 --messages 100)
        HISTORY=(--fill 2000 --fill-senders 40 --fill-rate 15 --queries 500 --concurrency 4)
        STORM=(--clients 500 --users 50)
        ;;
    medium)
        IDLE=(--connections 5000 --users 100 --hold-s 10)
        FANOUT=(--members 1000 --senders 10 --rate 10 --messages 100 --drain-s 60)
        SENDS=(--senders 200 --rooms 50 --rate 15 --messages 150)
        HISTORY=(--fill 10000 --fill-senders 100 --fill-rate 15 --queries 2000 --concurrency 8)
        STORM=(--clients 2000 --users 100)
        ;;
    target)
        # The one-process targets of BENCHMARKS.md: 19,000 idle sockets;
        # 1,000 members offered 1,000 messages/s, which needs the
        # per-connection frame rate raised.
        IDLE=(--connections 19000 --users 200 --hold-s 10)
        FANOUT=(--members 1000 --senders 10 --rate 100 --messages 300 --text-bytes 100 --drain-s 60)
        SENDS=(--senders 100 --rooms 10 --rate 50 --messages 300)
        HISTORY=(--fill 10000 --fill-senders 100 --fill-rate 15 --queries 2000 --concurrency 8)
        STORM=(--clients 19000 --users 200 --connect-rate 1000)
        export FRAMES_PER_SECOND=1000 FRAME_BURST=1000
        ulimit -n "$(ulimit -Hn)"
        ;;
    *) echo "SIZE must be small, medium or target" >&2; exit 2 ;;
esac
scenarios=("$@")
[ "${#scenarios[@]}" -gt 0 ] || scenarios=(idle fanout sends history storm)

server_cpu=()
loadgen_cpu=()
if [ "$PIN" = 1 ] && command -v taskset >/dev/null; then
    server_cpu=(taskset -c 0)
    loadgen_cpu=(taskset -c 1)
fi

if [ "$BUILD" = 1 ]; then
    case "$PROFILE" in
        release) (cd "$root" && cargo build --release -p chat -p loadgen) ;;
        debug) (cd "$root" && cargo build -p chat -p loadgen) ;;
        *) echo "PROFILE must be release or debug" >&2; exit 2 ;;
    esac
fi
if [ ! -d "$bench/node-baseline/node_modules" ]; then
    (cd "$bench/node-baseline" && npm ci --no-audit --no-fund)
fi
mkdir -p "$OUT" "$work"

started_pids=()
cleanup() {
    local pid
    for pid in "${started_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    if [ -f "$work/chat.pid" ]; then kill -TERM "$(cat "$work/chat.pid")" 2>/dev/null || true; fi
    rm -f "$work/chat.pid"
}
trap cleanup EXIT

wait_http() {
    for _ in $(seq 1 300); do
        curl -sf "$1" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "$1 did not answer" >&2
    return 1
}

# Starts chat on a fresh data directory; its pid goes to $work/chat.pid
# (the storm restart replaces it there).
start_chat() {
    chat_data="$(mktemp -d "$work/chat-data.XXXXXX")"
    "${server_cpu[@]}" "$chat_bin" --listen "127.0.0.1:$CHAT_PORT" --data-dir "$chat_data" \
        >"$chat_data/chat.log" 2>&1 &
    echo $! >"$work/chat.pid"
    wait_http "http://127.0.0.1:$CHAT_PORT/readyz"
}

# Stops a server and waits for it: SIGTERM (it may have exited already),
# then SIGKILL after 10 s, so the next scenario never finds its port taken.
stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
}

stop_chat() {
    stop_pid "$(cat "$work/chat.pid")"
    rm -f "$work/chat.pid"
    rm -rf "$chat_data"
}

start_node() {
    (cd "$bench/node-baseline" && PORT="$NODE_PORT" exec "${server_cpu[@]}" node server.js) \
        >"$work/node.log" 2>&1 &
    node_pid=$!
    started_pids+=("$node_pid")
    for _ in $(seq 1 100); do
        grep -q "node baseline on" "$work/node.log" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "the node baseline did not start; see $work/node.log" >&2
    return 1
}

stop_node() {
    stop_pid "$node_pid"
}

loadgen() {
    "${loadgen_cpu[@]}" "$loadgen_bin" "$@" --source-ips "$SOURCE_IPS"
}

# Checks the results named after the plot's file (bench/check-result.py),
# then plots them unless PLOT=0.
plot() {
    local png="$1"; shift
    local results=() spec
    for spec in "$@"; do results+=("${spec%%:*}"); done
    "$bench/check-result.py" "${results[@]}"
    [ "$PLOT" = 1 ] || return 0
    "$bench/plot.sh" "$png" "$@"
}

chat_url="http://127.0.0.1:$CHAT_PORT"
node_url="http://127.0.0.1:$NODE_PORT"
for scenario in "${scenarios[@]}"; do
    echo "== $scenario ($SIZE)"
    case "$scenario" in
        idle)
            start_chat
            loadgen idle --gateway "$chat_url" --gateway-pid "$(cat "$work/chat.pid")" "${IDLE[@]}" \
                --out "$OUT/idle-$SIZE-chat.json"
            stop_chat
            start_node
            loadgen idle --raw-ws --gateway "$node_url" --gateway-pid "$node_pid" "${IDLE[@]}" \
                --out "$OUT/idle-$SIZE-node.json"
            stop_node
            plot "$OUT/idle-$SIZE.png" "$OUT/idle-$SIZE-chat.json:chat" "$OUT/idle-$SIZE-node.json:node"
            ;;
        fanout)
            start_chat
            loadgen fanout --gateway "$chat_url" "${FANOUT[@]}" --out "$OUT/fanout-$SIZE-chat.json"
            stop_chat
            start_node
            loadgen fanout --raw-ws --gateway "$node_url" "${FANOUT[@]}" --out "$OUT/fanout-$SIZE-node.json"
            stop_node
            plot "$OUT/fanout-$SIZE.png" "$OUT/fanout-$SIZE-chat.json:chat" "$OUT/fanout-$SIZE-node.json:node"
            ;;
        sends)
            start_chat
            loadgen sends --gateway "$chat_url" "${SENDS[@]}" --out "$OUT/sends-$SIZE-chat.json"
            stop_chat
            plot "$OUT/sends-$SIZE.png" "$OUT/sends-$SIZE-chat.json:chat"
            ;;
        history)
            start_chat
            loadgen history --gateway "$chat_url" "${HISTORY[@]}" --out "$OUT/history-$SIZE-chat.json"
            stop_chat
            plot "$OUT/history-$SIZE.png" "$OUT/history-$SIZE-chat.json:chat"
            ;;
        storm)
            start_chat
            loadgen storm --gateway "$chat_url" "${STORM[@]}" \
                --restart-cmd "PIN=$PIN CHAT_PORT=$CHAT_PORT PROFILE=$PROFILE '$0' _restart_chat '$work/chat.pid' '$chat_data'" \
                --out "$OUT/storm-$SIZE-chat.json"
            stop_chat
            plot "$OUT/storm-$SIZE.png" "$OUT/storm-$SIZE-chat.json:chat"
            ;;
        *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
done
