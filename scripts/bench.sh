#!/usr/bin/env bash
# pinpipe's benchmarks (issue 5): builds the release binaries and prints one summary table.
#
#   scripts/bench.sh                 # everything; BENCH_BATCHES=5 batches per measurement
#   BENCH_FUNCTIONS_DIR=target/x86_64-unknown-linux-gnu/release scripts/bench.sh
#                                    # cold starts and sizes of functions built elsewhere
#   BENCH_NO_BUILD=1                 # use the pinpipe-bench already built in CARGO_TARGET_DIR
#   BENCH_ONLY=scale scripts/bench.sh
#                                    # only these sections (comma-separated): main, scale
#
# The scale section (about 6 minutes): commit cost against the table's depth
# (BENCH_SCALE_VERSIONS=5000 on local disk, BENCH_SCALE_S3_VERSIONS=1000 on moto S3), 1-16
# concurrent writers on one table (BENCH_SCALE_SECONDS=20 each), S3 requests per batch, the
# all-in cost per million records at the template's defaults, and the progress state a month
# leaves in a checkpoint. S3 is moto behind the integration tests' fault proxy: +20 ms per
# request, conditional PUTs serialised.
#
# Each measurement runs in a fresh process on deterministic emulator input: the stream
# consumer's handler on Lambda-sized Kinesis events (10,000 records, and the most that fit the
# 6 MB invoke payload) into Delta tables on local disk and on a moto S3 (loopback), the bare
# Parquet floor, the Python peers (bench/peer: polars, and pandas), the release stream-consumer
# itself through a loopback runtime API stub (hand-out of the event bytes to the posted
# answer, cold start to first answer with the table made by that batch and with the table
# already there, peak RSS, the floor run batch by batch beside it for the ratio; the Python
# peers' cold starts from process start too), cold starts
# against the stub, binary and zip sizes (BENCH_CARGO_LAMBDA=1 adds `cargo lambda build
# --release`'s), the producer's overhead on moto Kinesis, and the cost per million records.
# Honours CARGO_TARGET_DIR and PINPIPE_VENV (as scripts/test.sh). Nothing contacts AWS.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh
target="${CARGO_TARGET_DIR:-$root/target}"
batches="${BENCH_BATCHES:-5}"
only="${BENCH_ONLY:-}"
want() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }

ensure_venv
functions="${BENCH_FUNCTIONS_DIR:-}"
if ! want main; then
  : # the functions are only for the main section's cold starts
elif [ -z "$functions" ]; then
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
# The pandas peer has a virtualenv of its own (pandas and pyarrow are not the tools' business).
pandas_venv="$PINPIPE_VENV/pandas-peer"
want main && install_venv "$pandas_venv" "$root/bench/peer/requirements-pandas.txt"
pandas_python="$pandas_venv/bin/python"

events() { # table set -> the event files
  local k; for k in $(seq 0 $((batches - 1))); do echo "--event $work/events/$1-$2-$k.json"; done
}
event_paths() {
  local k; for k in $(seq 0 $((batches - 1))); do echo "$work/events/$1-$2-$k.json"; done
}
# One batch more than the others is generated and held back: a fresh process answers it against
# the table the others made, the cold start a deployed consumer meets.
cold_event() { echo "$work/events/$1-$2-$batches.json"; }
spawned_ns() { date +%s%N; }

if want main; then # (not indented, to keep this section as it was)
echo "== events from the emulator" >&2
for table in pin geo user; do
  for set in 10000 max; do
    "$bench" gen --table "$table" --records "$set" --batches "$((batches + 1))" --out "$work/events" >>"$results"
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
    # The Python peers: warm in one process, then cold in a fresh one on the held-back batch.
    for peer in polars pandas; do
      peer_python="$python"
      [ "$peer" = polars ] || peer_python="$pandas_python"
      # shellcheck disable=SC2046
      PINPIPE_BENCH_SPAWNED_NS="$(spawned_ns)" "$peer_python" bench/peer/run.py --peer "$peer" --table "$table" \
        --lake "$work/$peer-$table-$set" --label "$table-$set" $(event_paths "$table" "$set") >>"$results"
      PINPIPE_BENCH_SPAWNED_NS="$(spawned_ns)" "$peer_python" bench/peer/run.py --peer "$peer" --table "$table" \
        --lake "$work/$peer-$table-$set" --label "$table-$set" --cold-existing "$(cold_event "$table" "$set")" >>"$results"
    done
    # The release function itself, its own main and lambda_runtime, against the runtime API stub.
    # shellcheck disable=SC2046
    "$bench" runtime --bin "$functions/stream-consumer" --table "$table" --label "$table-$set" \
      --env PINPIPE_TABLE="$table" --env PINPIPE_LAKE_URI="$work/runtime-$table-$set" $(events "$table" "$set") \
      --cold-event "$(cold_event "$table" "$set")" --floor-out "$work/runtime-floor-$table-$set" >>"$results"
  done
done

echo "== binary and zip sizes" >&2
built_by="cargo build --release"
[ -z "${BENCH_FUNCTIONS_DIR:-}" ] || built_by="the build in $functions"
for function in stream-consumer maintenance producer; do
  "$bench" size --name "$function" --bin "$functions/$function" --build "$built_by" >>"$results"
done
if [ -n "${BENCH_CARGO_LAMBDA:-}" ]; then
  # A build of its own, as SAM runs it (scripts/sam-build.sh): in the function's package, with the
  # virtualenv first on PATH, whose Python has the Zig that cargo-lambda looks for. Quick when
  # `sam build` has built the same sources into this CARGO_TARGET_DIR, else minutes per function.
  echo "== cargo lambda build --release" >&2
  for function in stream-consumer maintenance producer; do
    (cd "functions/$function" && PATH="$PINPIPE_VENV/bin:$PATH" cargo lambda build --release --quiet --locked --bin "$function")
    "$bench" size --name "$function" --bin "$target/lambda/$function/bootstrap" --build "cargo lambda build --release" >>"$results"
  done
fi

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
fi

if want scale; then
  scale_started=$SECONDS
  versions="${BENCH_SCALE_VERSIONS:-5000}"
  s3_versions="${BENCH_SCALE_S3_VERSIONS:-1000}"
  seconds="${BENCH_SCALE_SECONDS:-20}"
  echo "== scale: depth to v$versions, a fresh process continuing it, progress state, 8 writers (local disk)" >&2
  "$bench" scale-depth --lake "$work/scale-depth" --versions "$versions" --label local >>"$results"
  "$bench" scale-depth --lake "$work/scale-depth" --versions "$((versions + 200))" --shard 1 --label local-continued >>"$results"
  "$bench" scale-progress --lake "$work/scale-progress" >>"$results"
  "$bench" scale-writers --lake "$work/scale-writers" --writers 8 --seconds "$seconds" --label local >>"$results"

  echo "== scale: moto S3 behind the fault proxy (+20 ms per request): depth to v$s3_versions, 1-16 writers, cost" >&2
  [ -n "${MOTO_PID:-}" ] || start_moto
  bucket() { # a fresh bucket per measurement: moto lists a bucket by scanning all its keys
    curl -fsS -X PUT "$AWS_ENDPOINT_URL/pinpipe-scale-$1" >/dev/null && echo "s3://pinpipe-scale-$1/lake"
  }
  "$bench" scale-probe --lake "$(bucket probe)" >>"$results"
  "$bench" scale-depth --lake "$(bucket depth)" --versions "$s3_versions" --latency-ms 20 --label s3 >>"$results"
  for w in 1 2 4 8 16; do
    "$bench" scale-writers --lake "$(bucket "writers-$w")" --writers "$w" --seconds "$seconds" --latency-ms 20 \
      --label s3 >>"$results"
  done
  # The cost at the template's defaults: its BatchSize records per batch, or the 8,000 geo
  # records that about fill Lambda's 6 MB payload if that is fewer; the consumer's memory.
  batch_size="$(awk '/^  BatchSize:/ {p = 1} p && /Default:/ {print $2; exit}' template.yaml)"
  batch_size=$((batch_size < 8000 ? batch_size : 8000))
  memory="$(awk '/^  ConsumerMemorySize:/ {p = 1} p && /Default:/ {print $2; exit}' template.yaml)"
  "$bench" scale-writers --lake "$(bucket cost)" --writers 1 --records "$batch_size" --memory-mb "$memory" \
    --seconds "$((seconds / 2))" --latency-ms 20 --label cost >>"$results"
  echo "== scale section took $((SECONDS - scale_started)) s" >&2
fi

[ -n "${BENCH_KEEP:-}" ] && cp "$results" "$BENCH_KEEP"
"$bench" report --results "$results"
