#!/usr/bin/env bash
# Proves that `cargo lambda watch` serves pinpipe's functions and that `cargo lambda invoke`
# reaches them with the sample events of events/, against a moto server on loopback (fake
# credentials, no AWS account). Prints "cargo lambda: N passed, M failed" and fails if M > 0.
#
#   scripts/lambda-local.sh
#
# Honours CARGO_TARGET_DIR and PINPIPE_VENV like scripts/test.sh. cargo-lambda comes from the
# virtualenv (scripts/requirements.txt). The functions run as debug builds, the way `cargo lambda
# watch` runs them (`cargo run --bin <function>`); they are built first so the first invocation
# does not wait for the compiler.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh
ensure_venv
export PATH="$PINPIPE_VENV/bin:$PATH"
if [ "$(command -v cargo-lambda)" != "$PINPIPE_VENV/bin/cargo-lambda" ]; then
  echo "cargo-lambda should come from $PINPIPE_VENV, found $(command -v cargo-lambda || echo nothing)" >&2
  exit 1
fi

prefix=0a1b2c3d4e5f # the prefix of the sample events and of the functions' `cargo lambda` env
workdir="$(mktemp -d -t pinpipe-lambda.XXXXXX)"
watch_pid=""
cleanup() {
  if [ -n "$watch_pid" ]; then
    kill -- -"$watch_pid" 2>/dev/null || true
    wait "$watch_pid" 2>/dev/null || true
  fi
  stop_moto
  rm -rf "$workdir"
}
trap cleanup EXIT
start_moto

echo "== building the functions as cargo lambda watch runs them"
for bin in producer stream-consumer batch-ingest maintenance; do
  cargo build --quiet --bin "$bin"
done

# The producer writes to the deployment's streams, which moto has to know.
"$PINPIPE_VENV/bin/python" - "$prefix" <<'PY'
import sys, boto3
k = boto3.client("kinesis")
for t in ("pin", "geo", "user"):
    k.create_stream(StreamName=f"streaming-{sys.argv[1]}-{t}", ShardCount=1)
PY
# The Kafka Connect object the S3 sample event names, in the raw bucket it names.
"$PINPIPE_VENV/bin/python" - <<'PY'
import json, pathlib, urllib.parse, boto3
record = json.load(open("events/s3-kafka-connect.json"))["Records"][0]["s3"]
bucket, key = record["bucket"]["name"], urllib.parse.unquote_plus(record["object"]["key"])
s3 = boto3.client("s3")
s3.create_bucket(Bucket=bucket)
s3.put_object(Bucket=bucket, Key=key, Body=pathlib.Path("events/kafka-connect", key).read_bytes())
PY

port="$(free_port)"
echo "== cargo lambda watch on 127.0.0.1:$port"
# Run from the work directory: the functions' default PINPIPE_LAKE_URI (`lake`, from their
# [package.metadata.lambda.env]) is relative, so their lake lands there. setsid makes the watch
# and the functions it starts one process group, stopped together by cleanup. --ignore-changes:
# others may be editing the tree; a rebuild mid-run would only slow this down.
(cd "$workdir" && exec setsid cargo lambda watch --manifest-path "$root/Cargo.toml" --ignore-changes \
  -A 127.0.0.1 -P "$port" --env-var "PINPIPE_LAKE_URI=$workdir/lake" >"$workdir/watch.log" 2>&1) &
watch_pid=$!
for _ in $(seq 1 120); do
  curl -s -o /dev/null "http://127.0.0.1:$port/" && break
  if ! kill -0 "$watch_pid" 2>/dev/null; then
    echo "cargo lambda watch exited:" >&2; cat "$workdir/watch.log" >&2; exit 1
  fi
  sleep 0.5
done

passed=0 failed=0
# invoke FUNCTION EVENT EXPECTED...: passes if the answer (whitespace removed) holds every EXPECTED.
invoke() {
  local function=$1 event=$2 out
  shift 2
  if ! out="$(cd "$root" && cargo lambda invoke "$function" --invoke-address 127.0.0.1 --invoke-port "$port" \
    --data-file "$event" 2>&1)"; then
    echo "FAIL $function < $event: $out"; tail -20 "$workdir/watch.log"; failed=$((failed + 1)); return
  fi
  out="$(tr -d ' \n' <<<"$out")"
  for expect in "$@"; do
    if [[ "$out" != *"$expect"* ]]; then
      echo "FAIL $function < $event: expected $expect in $out"; tail -20 "$workdir/watch.log"
      failed=$((failed + 1)); return
    fi
  done
  echo "ok   $function < $event"
  passed=$((passed + 1))
}
# check DESCRIPTION COMMAND...: passes if COMMAND succeeds.
check() {
  local what=$1
  shift
  if "$@"; then echo "ok   $what"; passed=$((passed + 1)); else echo "FAIL $what"; failed=$((failed + 1)); fi
}

invoke stream-consumer events/kinesis-pin.json '"batchItemFailures":[]'
check "the consumer wrote the pin table and quarantined the poison record" \
  test -d "$workdir/lake/pin/_delta_log" -a -d "$workdir/lake/quarantine/_delta_log"
invoke producer events/apigw-list-streams.json '"statusCode":200' "streaming-$prefix-pin"
invoke producer events/apigw-describe-stream.json '"statusCode":200' '\"StreamStatus\":\"ACTIVE\"'
invoke producer events/apigw-put-record.json '"statusCode":200' '\"SequenceNumber\":'
invoke producer events/apigw-put-records.json '"statusCode":200' '\"FailedRecordCount\":0'
invoke producer events/apigw-create-stream.json '"statusCode":403' 'StreamAdminDisabled'
invoke producer events/apigw-delete-stream.json '"statusCode":403' 'StreamAdminDisabled'
check "the producer's records are in moto's streams" "$PINPIPE_VENV/bin/python" - "$prefix" <<'PY'
import sys, boto3
k = boto3.client("kinesis")
def count(stream):
    it = k.get_shard_iterator(StreamName=stream, ShardId="shardId-000000000000",
                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    return len(k.get_records(ShardIterator=it)["Records"])
got = (count(f"streaming-{sys.argv[1]}-pin"), count(f"streaming-{sys.argv[1]}-geo"))
sys.exit(0 if got == (1, 3) else f"expected 1 pin and 3 geo records, found {got}")
PY
invoke batch-ingest events/s3-kafka-connect.json '"objects_read":1' '"rows_written":2' '"quarantined":1'
invoke maintenance events/scheduled.json '"table":"pin"' '"checkpoint_version":' '"skipped":"notableyet"'

echo "cargo lambda: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
