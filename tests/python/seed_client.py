"""Posts one pin, one geo and one user record to a producer the way the existing (seed) clients
do, and fails unless every answer is HTTP 200 with a SequenceNumber.

    python tests/python/seed_client.py BASE_URL PREFIX

BASE_URL is the API's base, e.g. https://<id>.execute-api.<region>.amazonaws.com/prod, or
http://127.0.0.1:9000/lambda-url/producer under `cargo lambda watch`. The request shape is the
seeds': PUT <base>/streams/<stream>/record/ (with the trailing slash), Content-Type
application/json, and a body of StreamName, Data (the record, its datetimes as ISO 8601
strings) and a random PartitionKey.
"""
import datetime
import json
import sys
import uuid

import requests


class IsoDatetimes(json.JSONEncoder):
    """Writes datetimes (and dates) as ISO 8601 text; everything else as json does."""

    def default(self, o):
        if isinstance(o, (datetime.datetime, datetime.date)):
            return o.isoformat()
        return super().default(o)


# One post, as the seeds read it from their database: the raw shapes of docs/records.md, with
# the timestamps as datetime values.
RECORDS = {
    "pin": {
        "index": 7528,
        "unique_id": "fbe53c66-3442-4773-b19e-d3ec6f54dddf",
        "title": "No Title Data Available",
        "description": "No description available Story format",
        "poster_name": "User Info Error",
        "follower_count": "User Info Error",
        "tag_list": "N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e",
        "is_image_or_video": "multi-video(story page format)",
        "image_src": "Image src error.",
        "downloaded": 0,
        "save_location": "Local save in /data/mens-fashion",
        "category": "mens-fashion",
    },
    "geo": {
        "ind": 7528,
        "timestamp": datetime.datetime(2020, 8, 28, 3, 52, 47),
        "latitude": -89.9787,
        "longitude": -173.293,
        "country": "Albania",
    },
    "user": {
        "ind": 7528,
        "first_name": "Abigail",
        "last_name": "Ali",
        "age": 20,
        "date_joined": datetime.datetime(2015, 10, 24, 11, 23, 51),
    },
}


def send(base, stream, record):
    """PUTs one record; returns the answer's SequenceNumber or raises with what went wrong."""
    body = json.dumps({"StreamName": stream, "Data": record, "PartitionKey": str(uuid.uuid4())}, cls=IsoDatetimes)
    response = requests.request(
        "PUT",
        f"{base}/streams/{stream}/record/",
        headers={"Content-Type": "application/json"},
        data=body,
        timeout=60,
    )
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
    try:
        sequence = response.json().get("SequenceNumber")
    except ValueError:
        sequence = None
    if not sequence:
        raise RuntimeError(f"no SequenceNumber in {response.text[:300]}")
    return sequence


def main(argv):
    if len(argv) != 3:
        print("usage: seed_client.py BASE_URL PREFIX", file=sys.stderr)
        return 2
    base, prefix = argv[1].rstrip("/"), argv[2]
    failures = 0
    for table, record in RECORDS.items():
        stream = f"streaming-{prefix}-{table}"
        try:
            print(f"{stream}: 200, SequenceNumber {send(base, stream, record)}")
        except (requests.RequestException, RuntimeError) as error:
            print(f"{stream}: {error}", file=sys.stderr)
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
