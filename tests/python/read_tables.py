"""Reads the lake that tests/tests/interop.rs wrote with other engines: the Python `deltalake`
package and polars. Fails unless both see every row, column and type pinpipe promises, the
rescued fields (`_rescued`) included, and both read a table from before `_rescued` existed, before
and after pinpipe added the column to it."""
import json
import os
import sys
from pathlib import Path

import polars as pl
from deltalake import DeltaTable, QueryBuilder

root = Path(os.environ["PINPIPE_INTEROP_DIR"])
expected = json.loads((root / "expected.json").read_text())
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def deltalake_sql(uri, sql):
    """`sql` over the table at `uri` as `t`, read by deltalake's own engine, as a polars frame."""
    return pl.DataFrame(QueryBuilder().register("t", DeltaTable(uri)).execute(sql).read_all())


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

# Rescued fields: the last column, JSON text of the fields no rule reads, null where there are none.
rescued_text = json.loads((root / "rescued.json").read_text())["pin_7"]
for name in ("pin", "geo", "user"):
    frame = pl.read_delta(str(root / "lake" / name))
    check(frame.columns[-1] == "_rescued", f"polars: {name}'s last column is {frame.columns[-1]}")
    check(frame["_rescued"].dtype == pl.String, f"polars: {name}._rescued is {frame['_rescued'].dtype}")
check(pin.filter(pl.col("_rescued").is_not_null())["ind"].to_list() == [7], "polars: only pin 7 has rescued fields")
check(pin.filter(pl.col("ind") == 7)["_rescued"].to_list() == [rescued_text], "polars: pin 7's _rescued is not as sent")
check(json.loads(rescued_text)["extra"] == {"a": [1, 2.5]}, "the rescued text is not JSON")
from_deltalake = deltalake_sql(str(root / "lake" / "pin"), "SELECT ind, _rescued FROM t WHERE _rescued IS NOT NULL")
check(from_deltalake.rows() == [(7, rescued_text)], f"deltalake: pin's rescued fields are {from_deltalake.rows()}")

# A table from before `_rescued`, and the same table after the sink added the column.
before_uri, after_uri = (str(root / "evolution" / when / "pin") for when in ("before", "after"))
before = pl.read_delta(before_uri)
check(before.height == 10 and "_rescued" not in before.columns, f"polars: the old table reads {before.height} rows, {before.columns}")
after = pl.read_delta(after_uri)
check(after.height == 25, f"polars: the evolved table has {after.height} rows")
check(after.columns == before.columns + ["_rescued"], f"polars: the evolved table's columns are {after.columns}")
old_rows = after.filter(pl.col("ind") <= 10)
check(old_rows["_rescued"].null_count() == 10, "polars: rows written before the column do not read null")
check(after.filter(pl.col("_rescued").is_not_null())["ind"].to_list() == [17], "polars: only pin 17 has rescued fields")
check(after.filter(pl.col("ind") == 17)["_rescued"].to_list() == [rescued_text], "polars: pin 17's _rescued is not as sent")
evolved = DeltaTable(after_uri)
check("_rescued" in [f.name for f in evolved.schema().fields], "deltalake: the evolved schema lacks _rescued")
operations = [c["operation"] for c in evolved.history()]
check(operations.count("ADD COLUMN") == 1, f"deltalake: the evolved table's history is {operations}")
counts = deltalake_sql(after_uri, "SELECT COUNT(*) AS n, COUNT(_rescued) AS rescued, MAX(_rescued) AS text FROM t")
check(counts.rows() == [(25, 1, rescued_text)], f"deltalake: the evolved table reads {counts.rows()}")
print(f"evolution: {before.height} rows before, {after.height} after, history {operations}")

if failures:
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1)
print(f"other engines: {len(expected)} tables read, all checks passed")
