"""The pandas peer: handler.py's stream consumer written with pandas instead of polars, as the
common Python Lambda (AWS SDK for pandas) would: decode the Kinesis batch, clean it with pandas
(SPEC §2), append the clean rows and the rejected records to Delta tables with `deltalake`
(pandas frames reach it through pyarrow). Configuration and semantics as handler.py's; no
exactly-once progress.
"""

import base64
import json
import os
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import write_deltalake

from rules import FIELDS, NULLS

TABLE = os.environ["PINPIPE_TABLE"]
LAKE = os.environ["PINPIPE_LAKE_URI"].rstrip("/")


def blank_to_null(s, nulls=()):
    stripped = s.str.strip()
    return s.mask((stripped == "") | stripped.isin(list(nulls)))


def to_int(s):
    return np.trunc(pd.to_numeric(s.str.strip(), errors="coerce")).astype("Int64")


def to_timestamp(s):
    text = s.str.strip().str.replace("T", " ", regex=False).str.slice(0, 19)
    return pd.to_datetime(text, format="%Y-%m-%d %H:%M:%S", errors="coerce", utc=True).astype("datetime64[us, UTC]")


def follower_count(s):
    s = s.str.replace(",", "", regex=False)
    scale = np.where(s.str.endswith("k").fillna(False), 1_000, np.where(s.str.endswith("M").fillna(False), 1_000_000, 1))
    return np.trunc(pd.to_numeric(s.str.rstrip("kM"), errors="coerce") * scale).astype("Int64")


def clean(df):
    """Returns (clean rows, rejected rows with a reason)."""
    reason = pd.Series(None, index=df.index, dtype="object")

    def reject(why, bad):
        nonlocal reason
        reason = reason.where(~(bad.fillna(False).astype(bool) & reason.isna()), why)

    if TABLE == "pin":
        for c in FIELDS["pin"][2:]:
            df[c] = blank_to_null(df[c], NULLS.get(c, ()))
        df["ind"] = to_int(df["index"]).fillna(to_int(df["ind"]))
        fc, dl = follower_count(df["follower_count"]), to_int(df["downloaded"])
        reject("ind: missing key field", df["ind"].isna())
        reject("follower_count: cannot convert", df["follower_count"].notna() & fc.isna())
        reject("downloaded: cannot convert", df["downloaded"].notna() & dl.isna())
        df["follower_count"], df["downloaded"] = fc, dl
        df["save_location"] = df["save_location"].str.removeprefix("Local save in ").str.strip()
        out = ["ind", "unique_id", "title", "description", "follower_count", "poster_name", "tag_list",
               "is_image_or_video", "image_src", "save_location", "category", "downloaded"]
    elif TABLE == "geo":
        for c in ["country", "latitude", "longitude", "timestamp"]:
            df[c] = blank_to_null(df[c])
        df["ind"] = to_int(df["ind"]).fillna(to_int(df["index"]))
        lat, lon = pd.to_numeric(df["latitude"], errors="coerce"), pd.to_numeric(df["longitude"], errors="coerce")
        df["coordinates"] = [[a, b] for a, b in zip(lat, lon)]
        ts = to_timestamp(df["timestamp"])
        reject("ind: missing key field", df["ind"].isna())
        reject("timestamp: cannot parse", df["timestamp"].notna() & ts.isna())
        df["timestamp"] = ts
        out = ["ind", "country", "coordinates", "timestamp"]
    else:
        for c in ["first_name", "last_name", "age", "date_joined"]:
            df[c] = blank_to_null(df[c])
        df["ind"] = to_int(df["ind"]).fillna(to_int(df["index"]))
        df["user_name"] = df[["first_name", "last_name"]].apply(lambda r: " ".join(x for x in r if isinstance(x, str)) or None, axis=1)
        age, joined = to_int(df["age"]), to_timestamp(df["date_joined"])
        reject("ind: missing key field", df["ind"].isna())
        reject("age: cannot convert", df["age"].notna() & age.isna())
        reject("date_joined: cannot parse", df["date_joined"].notna() & joined.isna())
        df["age"], df["date_joined"] = age, joined
        out = ["ind", "user_name", "age", "date_joined"]
    df["_reason"] = reason
    df["_ingested_at"] = pd.Timestamp(datetime.now(timezone.utc)).as_unit("us")
    good = df[df["_reason"].isna()][out + ["_source", "_position", "_ingested_at"]]
    bad = df[df["_reason"].notna()][["_raw", "_source", "_position", "_reason"]]
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
    df = pd.DataFrame(rows, columns=FIELDS[TABLE] + ["_raw", "_source", "_position"]).astype({k: "object" for k in FIELDS[TABLE]})
    good, bad = clean(df)
    if len(good):
        write_deltalake(f"{LAKE}/{TABLE}", pa.Table.from_pandas(good, preserve_index=False), mode="append")
    if rejected:
        bad = pd.concat([bad, pd.DataFrame(rejected)], ignore_index=True)
    if len(bad):
        quarantine = pd.DataFrame({
            "table": TABLE, "source": bad["_source"], "position": bad["_position"], "raw": bad["_raw"],
            "raw_text": [r.decode("utf-8", "replace") for r in bad["_raw"]], "reason": bad["_reason"],
            "quarantined_at": pd.Timestamp(datetime.now(timezone.utc)).as_unit("us")})
        write_deltalake(f"{LAKE}/quarantine", pa.Table.from_pandas(quarantine, preserve_index=False), mode="append")
    return {"batchItemFailures": []}
