"""Runs the Python peer's handler on event files in one process, as a warm Lambda would, and
prints one JSON line: per-batch milliseconds (from the invoke payload's bytes), peak RSS."""

import argparse
import json
import os
import resource
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--table", required=True)
parser.add_argument("--lake", required=True)
parser.add_argument("--label", default="")
parser.add_argument("--peer", default="polars", choices=["polars", "pandas"])
parser.add_argument("events", nargs="+")
args = parser.parse_args()
os.environ["PINPIPE_TABLE"], os.environ["PINPIPE_LAKE_URI"] = args.table, args.lake

started = time.perf_counter()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if args.peer == "pandas":
    import handler_pandas as handler  # noqa: E402
else:
    import handler  # noqa: E402

import_ms = (time.perf_counter() - started) * 1e3
ms = []
for path in args.events:
    with open(path, "rb") as f:
        payload = f.read()
    started = time.perf_counter()
    handler.handler(json.loads(payload), None)
    ms.append((time.perf_counter() - started) * 1e3)
warm = sorted(ms[1:])[len(ms[1:]) // 2] if len(ms) > 1 else ms[0]
print(json.dumps({"kind": "peer", "peer": args.peer, "label": args.label, "table": args.table, "records": len(json.loads(payload)["Records"]),
                  "payload_bytes": len(payload), "batches": len(ms), "ms": ms, "cold_ms": ms[0], "warm_ms": warm,
                  "import_ms": import_ms, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
