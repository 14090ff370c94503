"""The Python peer: pinpipe's stream consumer as a data engineer would write it as a Python Lambda.

Decode the Kinesis batch, clean it with polars (SPEC §2), append the clean rows and the rejected
records to Delta tables with the `deltalake` package. Configuration as pinpipe's:
PINPIPE_TABLE (pin|geo|user), PINPIPE_LAKE_URI (a local directory or s3://bucket/prefix).
It keeps no exactly-once progress; a redelivered batch is appended again.
"""

import base64
import json
import os
from datetime import datetime, timezone

import polars as pl
from deltalake import write_deltalake

from rules import FIELDS, NULLS

TABLE = os.environ["PINPIPE_TABLE"]
LAKE = os.environ["PINPIPE_LAKE_URI"].rstrip("/")


def blank_to_null(name, nulls=()):
    c = pl.col(name).str.strip_chars()
    return pl.when((c == "") | c.is_in(list(nulls))).then(None).otherwise(pl.col(name)).alias(name)


def to_int(name):
    return pl.col(name).str.strip_chars().cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)


def to_timestamp(name):
    c = pl.col(name).str.strip_chars().str.replace("T", " ").str.slice(0, 19)
    return c.str.to_datetime("%Y-%m-%d %H:%M:%S", time_unit="us", time_zone="UTC", strict=False)


def follower_count():
    c = pl.col("follower_count")
    number = c.str.replace_all(",", "").str.strip_suffix("k").str.strip_suffix("M").cast(pl.Int64, strict=False)
    scale = pl.when(c.str.ends_with("k")).then(1_000).when(c.str.ends_with("M")).then(1_000_000).otherwise(1)
    return number * scale


def clean(df):
    """Returns (clean rows, rejected rows with a reason)."""
    checks = []  # (reason, expression that is true when the record must be rejected)
    if TABLE == "pin":
        df = df.with_columns(blank_to_null(c, NULLS.get(c, ())) for c in FIELDS["pin"][2:])
        df = df.with_columns(
            pl.coalesce(to_int("index"), to_int("ind")).alias("ind"),
            follower_count().alias("follower_count_clean"),
            to_int("downloaded").alias("downloaded_clean"),
            pl.col("save_location").str.strip_prefix("Local save in ").str.strip_chars().alias("save_location"),
        )
        checks = [
            ("follower_count: cannot convert", pl.col("follower_count").is_not_null() & pl.col("follower_count_clean").is_null()),
            ("downloaded: cannot convert", pl.col("downloaded").is_not_null() & pl.col("downloaded_clean").is_null()),
        ]
        out = ["ind", "unique_id", "title", "description", pl.col("follower_count_clean").alias("follower_count"),
               "poster_name", "tag_list", "is_image_or_video", "image_src", "save_location", "category",
               pl.col("downloaded_clean").alias("downloaded")]
    elif TABLE == "geo":
        df = df.with_columns(blank_to_null(c) for c in ["country", "latitude", "longitude", "timestamp"])
        df = df.with_columns(
            pl.coalesce(to_int("ind"), to_int("index")).alias("ind"),
            pl.concat_list(pl.col("latitude").cast(pl.Float64, strict=False),
                           pl.col("longitude").cast(pl.Float64, strict=False)).alias("coordinates"),
            to_timestamp("timestamp").alias("timestamp_clean"),
        )
        checks = [("timestamp: cannot parse", pl.col("timestamp").is_not_null() & pl.col("timestamp_clean").is_null())]
        out = ["ind", "country", "coordinates", pl.col("timestamp_clean").alias("timestamp")]
    else:
        df = df.with_columns(blank_to_null(c) for c in ["first_name", "last_name", "age", "date_joined"])
        df = df.with_columns(
            pl.coalesce(to_int("ind"), to_int("index")).alias("ind"),
            pl.concat_str(["first_name", "last_name"], separator=" ", ignore_nulls=True).alias("user_name"),
            to_int("age").alias("age_clean"),
            to_timestamp("date_joined").alias("date_joined_clean"),
        )
        checks = [
            ("age: cannot convert", pl.col("age").is_not_null() & pl.col("age_clean").is_null()),
            ("date_joined: cannot parse", pl.col("date_joined").is_not_null() & pl.col("date_joined_clean").is_null()),
        ]
        out = ["ind", "user_name", pl.col("age_clean").alias("age"), pl.col("date_joined_clean").alias("date_joined")]
    checks.insert(0, ("ind: missing key field", pl.col("ind").is_null()))
    reason = pl.lit(None, dtype=pl.String)
    for why, bad in reversed(checks):
        reason = pl.when(bad).then(pl.lit(why)).otherwise(reason)
    df = df.with_columns(reason.alias("_reason"))
    lineage = ["_source", "_position", pl.lit(datetime.now(timezone.utc)).dt.cast_time_unit("us").alias("_ingested_at")]
    good = df.filter(pl.col("_reason").is_null()).select(out + lineage)
    bad = df.filter(pl.col("_reason").is_not_null()).select("_raw", "_source", "_position", "_reason")
    return good, bad


def handler(event, context):
    rows, rejected = [], []
    for record in event["Records"]:
        raw = base64.b64decode(record["kinesis"]["data"])
        shard = record["eventID"].split(":", 1)[0]
        stream = record["eventSourceARN"].rsplit(":stream/", 1)[1]
        source, position = f"kinesis:{stream}/{shard}", record["kinesis"]["sequenceNumber"]
        try:
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            rejected.append({"_raw": raw, "_source": source, "_position": position, "_reason": str(e)})
            continue
        row = {k: None if value.get(k) is None else str(value[k]) for k in FIELDS[TABLE]}
        row.update(_raw=raw, _source=source, _position=position)
        rows.append(row)
    schema = {k: pl.String for k in FIELDS[TABLE]} | {"_raw": pl.Binary, "_source": pl.String, "_position": pl.String}
    good, bad = clean(pl.DataFrame(rows, schema=schema))
    if len(good):
        write_deltalake(f"{LAKE}/{TABLE}", good, mode="append")
    bad = pl.concat([bad, pl.DataFrame(rejected, schema=bad.schema)]) if rejected else bad
    if len(bad):
        quarantine = bad.select(
            pl.lit(TABLE).alias("table"), pl.col("_source").alias("source"), pl.col("_position").alias("position"),
            pl.col("_raw").alias("raw"), pl.col("_raw").cast(pl.String, strict=False).alias("raw_text"),
            pl.col("_reason").alias("reason"),
            pl.lit(datetime.now(timezone.utc)).dt.cast_time_unit("us").alias("quarantined_at"))
        write_deltalake(f"{LAKE}/quarantine", quarantine, mode="append")
    return {"batchItemFailures": []}
