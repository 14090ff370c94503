"""Runs the Python peer's handler on event files in one process, as a warm Lambda would, and
prints one JSON line: per-batch milliseconds (from the invoke payload's bytes), peak RSS.

With PINPIPE_BENCH_SPAWNED_NS (the wall clock in nanoseconds just before the process was
spawned, as `date +%s%N` gives it) the line also says how long the interpreter took to reach this
script (`startup_ms`), so the cold start is counted from process start as the consumer's is.
With --cold-existing the one event is this process's first and only batch, against a table an
earlier run made: the line is a `peer_cold`, the cold start a deployed handler meets."""

import time

reached_ns = time.time_ns()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--table", required=True)
parser.add_argument("--lake", required=True)
parser.add_argument("--label", default="")
parser.add_argument("--peer", default="polars", choices=["polars", "pandas"])
parser.add_argument("--cold-existing", action="store_true")
parser.add_argument("events", nargs="+")
args = parser.parse_args()
spawned_ns = os.environ.get("PINPIPE_BENCH_SPAWNED_NS")
startup_ms = (reached_ns - int(spawned_ns)) / 1e6 if spawned_ns else None
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
if args.cold_existing:
    print(json.dumps({"kind": "peer_cold", "peer": args.peer, "label": args.label, "table": args.table,
                      "startup_ms": startup_ms, "import_ms": import_ms, "first_batch_ms": ms[0]}))
    sys.exit(0)
warm = sorted(ms[1:])[len(ms[1:]) // 2] if len(ms) > 1 else ms[0]
print(json.dumps({"kind": "peer", "peer": args.peer, "label": args.label, "table": args.table, "records": len(json.loads(payload)["Records"]),
                  "payload_bytes": len(payload), "batches": len(ms), "ms": ms, "cold_ms": ms[0], "warm_ms": warm,
                  "import_ms": import_ms, "startup_ms": startup_ms, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
