#!/usr/bin/env bash
# pinpipe's benchmarks (issue 5): builds the release binaries and prints one summary table.
#
#   scripts/bench.sh                 # everything; BENCH_BATCHES=5 batches per measurement
#   BENCH_FUNCTIONS_DIR=target/x86_64-unknown-linux-gnu/release scripts/bench.sh
#                                    # cold starts and sizes of functions built elsewhere
#   BENCH_NO_BUILD=1                 # use the pinpipe-bench already built in CARGO_TARGET_DIR
#
# Each measurement runs in a fresh process on deterministic emulator input: the stream
# consumer's handler on Lambda-sized Kinesis events (10,000 records, and the most that fit the
# 6 MB invoke payload) into Delta tables on local disk and on a moto S3 (loopback), the bare
# Parquet floor, the Python peer (bench/peer), cold starts against a loopback runtime API stub,
# binary sizes, the producer's overhead on moto Kinesis, and the cost per million records.
# Honours CARGO_TARGET_DIR and PINPIPE_VENV (as scripts/test.sh). Nothing contacts AWS.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh
target="${CARGO_TARGET_DIR:-$root/target}"
batches="${BENCH_BATCHES:-5}"

ensure_venv
functions="${BENCH_FUNCTIONS_DIR:-}"
if [ -z "$functions" ]; then
  echo "== building the release functions, one at a time as they are deployed" >&2
  for function in stream-consumer maintenance producer; do cargo build --release -q -p "$function"; done
  functions="$target/release"
else
  echo "== using the release functions in $functions" >&2
fi
if [ -z "${BENCH_NO_BUILD:-}" ]; then
  echo "== building pinpipe-bench (release)" >&2
  cargo build --release -q -p pinpipe-bench
fi
bench="$target/release/pinpipe-bench"

work="$(mktemp -d -t pinpipe-bench.XXXXXX)"
trap 'stop_moto; rm -rf "$work"' EXIT
results="$work/results.jsonl"
python="$PINPIPE_VENV/bin/python"

events() { # table set -> the event files
  local k; for k in $(seq 0 $((batches - 1))); do echo "--event $work/events/$1-$2-$k.json"; done
}
event_paths() {
  local k; for k in $(seq 0 $((batches - 1))); do echo "$work/events/$1-$2-$k.json"; done
}

echo "== events from the emulator" >&2
for table in pin geo user; do
  for set in 10000 max; do
    "$bench" gen --table "$table" --records "$set" --batches "$batches" --out "$work/events" >>"$results"
  done
done

echo "== consumer, floor and Python peer on local disk" >&2
for table in pin geo user; do
  for set in 10000 max; do
    # shellcheck disable=SC2046
    "$bench" consume --table "$table" --lake "$work/lake-$table-$set" --label "$table-$set-local" $(events "$table" "$set") >>"$results"
    # shellcheck disable=SC2046
    "$bench" consume --sequential --table "$table" --lake "$work/seq-$table-$set" --label "$table-$set-local-seq" $(events "$table" "$set") >>"$results"
    # shellcheck disable=SC2046
    "$bench" breakdown --table "$table" --label "$table $set" $(events "$table" "$set") >>"$results"
    # shellcheck disable=SC2046
    "$bench" floor --table "$table" --out "$work/floor-$table-$set" --label "$table-$set" $(events "$table" "$set") >>"$results"
    # shellcheck disable=SC2046
    "$python" bench/peer/run.py --table "$table" --lake "$work/peer-$table-$set" --label "$table-$set" $(event_paths "$table" "$set") >>"$results"
  done
done

echo "== consumer on moto S3, producer on moto Kinesis" >&2
start_moto
curl -fsS -X PUT "$AWS_ENDPOINT_URL/pinpipe-bench" >/dev/null
for set in 10000 max; do
  # shellcheck disable=SC2046
  "$bench" consume --table pin --lake "s3://pinpipe-bench/lake-$set" --label "pin-$set-s3" $(events pin "$set") >>"$results"
  # shellcheck disable=SC2046
  "$bench" consume --sequential --table pin --lake "s3://pinpipe-bench/seq-$set" --label "pin-$set-s3-seq" $(events pin "$set") >>"$results"
done
"$bench" producer --records 500 --iterations "${BENCH_PRODUCER_ITERATIONS:-200}" >>"$results"

echo "== cold starts" >&2
creds=(--env AWS_REGION=us-east-1 --env AWS_ACCESS_KEY_ID=pinpipe-bench --env AWS_SECRET_ACCESS_KEY=pinpipe-bench
  --env "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL")
"$bench" coldstart --name stream-consumer --bin "$functions/stream-consumer" "${creds[@]}" \
  --env PINPIPE_TABLE=pin --env PINPIPE_LAKE_URI=s3://pinpipe-bench/cold >>"$results"
"$bench" coldstart --name maintenance --bin "$functions/maintenance" "${creds[@]}" \
  --env PINPIPE_LAKE_URI=s3://pinpipe-bench/cold >>"$results"
"$bench" coldstart --name producer --bin "$functions/producer" "${creds[@]}" \
  --env PINPIPE_PREFIX=0a1b2c3d4e5f >>"$results"

[ -n "${BENCH_KEEP:-}" ] && cp "$results" "$BENCH_KEEP"
"$bench" report --results "$results"
