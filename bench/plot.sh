#!/usr/bin/env bash
# Renders loadgen JSON results to one PNG: latency distributions (left) and
# throughput over time (right). Creates (once) a Python virtual environment
# with matplotlib under ~/.cache.
#
#   bench/plot.sh OUT.png RESULTS.json[:LABEL]...
#
# Settings (environment): BENCH_VENV (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/chat/bench-venv), PYTHON (python3).
set -euo pipefail

venv="${BENCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/chat/bench-venv}"
if [ ! -x "$venv/bin/python" ]; then
    echo "creating the Python environment in $venv" >&2
    mkdir -p "$(dirname "$venv")"
    "${PYTHON:-python3}" -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -c 'import matplotlib' >/dev/null 2>&1; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check matplotlib >&2
fi
exec "$venv/bin/python" "$(dirname "$0")/plot.py" "$@"
