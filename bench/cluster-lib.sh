# Sourced by bench/cluster.sh and bench/connections.sh: builds the
# distributed topology's binaries and describes a scripts/cluster of the
# benchmark's own (fresh databases and Redis namespace, named after the
# start time) that `bench_cluster_down` stops and removes again.
#
# Reads root, target, PROFILE (release or debug) and BUILD (1: cargo build
# first); sets loadgen_bin, database_base and suffix.

case "$PROFILE" in
    release) build_flags=(--release) ;;
    debug) build_flags=() ;;
    *) echo "PROFILE must be release or debug" >&2; exit 2 ;;
esac
if [ "$BUILD" = 1 ]; then
    (cd "$root" && cargo build "${build_flags[@]}" -p loadgen -p chat-auth-service -p chat-message-service \
        -p chat-presence-service -p chat-gateway)
fi
loadgen_bin="$target/$PROFILE/loadgen"
database_base="postgres://postgres@127.0.0.1:5432"
suffix="$(date +%s)"

# Sets `cluster`, the environment and command prefix of scripts/cluster for
# this benchmark: its state under DIR, plus any VAR=VALUE given.
bench_cluster() {
    cluster_dir="$1"; shift
    cluster=(env CLUSTER_DIR="$cluster_dir" PROFILE="$PROFILE" CLUSTER_BUILD=0
        AUTH_DATABASE="bench_auth_$suffix" MESSAGE_DATABASE="bench_message_$suffix"
        CHAT_NAMESPACE="bench$suffix" RUST_LOG=warn "$@")
}

bench_cluster_up() {
    rm -rf "$cluster_dir"
    "${cluster[@]}" "$root/scripts/cluster" up >/dev/null
}

# The EXIT trap: every step runs even when one fails (the cluster may be
# down already), and a failure is reported, as it leaves databases, keys or
# processes behind.
bench_cluster_down() {
    "${cluster[@]}" "$root/scripts/cluster" down >/dev/null \
        || echo "warning: scripts/cluster down failed; see $cluster_dir" >&2
    PGOPTIONS="-c client_min_messages=warning" psql -q "$database_base/postgres" \
        -c "DROP DATABASE IF EXISTS bench_auth_$suffix WITH (FORCE)" \
        -c "DROP DATABASE IF EXISTS bench_message_$suffix WITH (FORCE)" \
        || echo "warning: the databases bench_*_$suffix may be left behind" >&2
    redis-cli --scan --pattern "bench$suffix:*" | xargs -r -n 500 redis-cli del >/dev/null \
        || echo "warning: Redis keys bench$suffix:* may be left behind" >&2
}
