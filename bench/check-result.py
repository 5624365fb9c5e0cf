#!/usr/bin/env python3
"""Fails unless every phase of loadgen result files is whole: every message
delivered once and in order, no error, every connection opened and held,
every history page of the right size, every storm client resumed. A number
measured on a run that lost something would mean nothing.

    bench/check-result.py RESULT.json...
"""
import json
import sys

MUST_BE_ZERO = ["errors", "dropped", "out_of_order", "connect_failed", "http_failed",
                "ws_failed", "http_wrong_size", "ws_wrong_size", "failed"]


def problems(path):
    with open(path) as f:
        result = json.load(f)
    found = []
    for phase in result["phases"]:
        c = phase["counts"]
        found += [f"{phase['name']}: {k} = {c[k]}" for k in MUST_BE_ZERO if c.get(k, 0) != 0]
        if "complete" in c and c["complete"] != 1:
            found.append(f"{phase['name']}: delivered {c.get('delivered')} of {c.get('expected_deliveries')}")
        if "clients" in c and c.get("resumed") != c["clients"]:
            found.append(f"{phase['name']}: resumed {c.get('resumed')} of {c['clients']}")
    return found


if len(sys.argv) < 2:
    sys.exit(__doc__)
failed = False
for path in sys.argv[1:]:
    found = problems(path)
    if found:
        print(f"{path}: " + "; ".join(found), file=sys.stderr)
        failed = True
sys.exit(1 if failed else 0)
