"""Plots loadgen results: one PNG per call, comparing the given runs.

Left: every latency distribution of every run (HDR percentile plot: the
x axis spreads the tail, 90 % / 99 % / 99.9 % ... equally apart). Right:
the per-second samples of each run's main counter (deliveries, acks,
connections or resumes), with the gateway's RSS on a second axis when the
run recorded it (idle).

    python plot.py OUT.png RESULTS.json[:LABEL]...
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter  # noqa: E402

# The counter that best shows a scenario's throughput, in order of choice.
MAIN_COUNTERS = ["delivered", "acked", "resumed", "http_ok", "connected"]


def load(arg):
    path, _, label = arg.partition(":")
    with open(path) as f:
        return json.load(f), label or path


def tail(q):
    """x position of quantile q: log10(1 / (1 - q)), 99 % -> 2."""
    import math

    return math.log10(1.0 / max(1.0 - q, 1e-7))


def main(out, args):
    runs = [load(a) for a in args]
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(13, 5))
    any_latency = False
    for report, label in runs:
        for phase in report["phases"]:
            for name, l in phase.get("latencies_us", {}).items():
                points = l.get("distribution") or []
                if not points:
                    continue
                any_latency = True
                xs = [tail(q) for q, _ in points]
                ys = [v / 1000.0 for _, v in points]
                lat.plot(xs, ys, label=f"{label} {phase['name']} {name} (n={l['count']})")
    lat.set_yscale("log")
    lat.set_ylabel("latency (ms)")
    ticks = [0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999]
    lat.xaxis.set_major_locator(FixedLocator([tail(q) for q in ticks]))
    lat.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{100 - 100 / 10**x:g}%"))
    lat.set_xlabel("percentile")
    lat.set_title("latency distribution")
    lat.grid(True, which="both", alpha=0.3)
    if any_latency:
        lat.legend(fontsize=7)
    else:
        lat.text(0.5, 0.5, "no latencies in this scenario", ha="center", transform=lat.transAxes)

    rss_axis = None
    for report, label in runs:
        offset = 0
        for phase in report["phases"]:
            samples = phase.get("samples") or []
            if not samples:
                continue
            counter = next((c for c in MAIN_COUNTERS if any(s.get(c) for s in samples)), None)
            ts = [offset + s["t"] for s in samples]
            if counter:
                thr.plot(ts, [s.get(counter, 0) for s in samples], label=f"{label} {phase['name']} {counter}/s", marker=".")
            rss = [s.get("gauges", {}).get("gateway_rss_bytes") for s in samples]
            if any(r is not None for r in rss):
                rss_axis = rss_axis or thr.twinx()
                rss_axis.plot(ts, [(r or 0) / 2**20 for r in rss], linestyle="--", label=f"{label} gateway RSS (MiB)")
            offset = ts[-1]
    thr.set_xlabel("seconds (phases one after another)")
    thr.set_ylabel("per second")
    thr.set_title("throughput over time")
    thr.grid(True, alpha=0.3)
    thr.legend(fontsize=7, loc="upper left")
    if rss_axis:
        rss_axis.set_ylabel("gateway RSS (MiB)")
        rss_axis.legend(fontsize=7, loc="upper right")

    fig.suptitle(" vs ".join(f"{label}: {r['scenario']}" for r, label in runs))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
