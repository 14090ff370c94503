"""Reads the lake that tests/tests/interop.rs wrote with other engines: the Python `deltalake`
package and polars. Fails unless both see every row, column and type pinpipe promises."""
import json
import os
import sys
from pathlib import Path

import polars as pl
from deltalake import DeltaTable

root = Path(os.environ["PINPIPE_INTEROP_DIR"])
expected = json.loads((root / "expected.json").read_text())
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


for name, rows in expected.items():
    uri = str(root / "lake" / name)
    table = DeltaTable(uri)
    counted = pl.DataFrame(table.get_add_actions(flatten=True))["num_records"].sum()
    check(counted == rows, f"deltalake: {name}'s files hold {counted} rows, expected {rows}")
    check(table.history(1)[0]["operation"] == "WRITE", f"deltalake: {name}'s last commit is not a WRITE")
    frame = pl.read_delta(uri)
    check(frame.height == rows, f"polars: {name} has {frame.height} rows, expected {rows}")
    if name != "quarantine":
        check(frame["ind"].dtype == pl.Int64, f"polars: {name}.ind is {frame['ind'].dtype}")
        check(frame["ind"].n_unique() == rows, f"polars: {name}.ind has duplicates")
        check(frame["_ingested_at"].dtype == pl.Datetime("us", "UTC"), f"polars: {name}._ingested_at is {frame['_ingested_at'].dtype}")
    print(f"{name}: {frame.height} rows, columns {frame.columns}")

geo = pl.read_delta(str(root / "lake" / "geo"))
check(geo["coordinates"].dtype == pl.List(pl.Float64), f"polars: geo.coordinates is {geo['coordinates'].dtype}")
check(geo["coordinates"][0].to_list() == [10.5, -20.25], f"polars: geo.coordinates[0] is {geo['coordinates'][0]}")
check(geo["timestamp"].dtype == pl.Datetime("us", "UTC"), f"polars: geo.timestamp is {geo['timestamp'].dtype}")
pin = pl.read_delta(str(root / "lake" / "pin"))
check(pin.filter(pl.col("ind") == 7)["follower_count"].to_list() == [7000], "polars: pin.follower_count of ind 7 is not 7000")
check(pin["description"].null_count() == pin.height, "polars: placeholder descriptions are not null")
user = pl.read_delta(str(root / "lake" / "user"))
check(set(user["user_name"].to_list()) == {"Abigail Ali"}, "polars: user.user_name is not first + last name")

if failures:
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1)
print(f"other engines: {len(expected)} tables read, all checks passed")
