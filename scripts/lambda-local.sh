#!/usr/bin/env bash
# Proves that `cargo lambda watch` serves pinpipe's functions and that `cargo lambda invoke`
# reaches them with the sample events of events/, against a moto server on loopback (fake
# credentials, no AWS account); then does the whole local round over plain HTTP: curl, the
# seeds' Python client (tests/python/seed_client.py) and `pinpipe emulate` post to the producer's
# function URL, `pinpipe poll` hands the streams to the consumer as Lambda's event source mapping
# would, and the lake's tables must hold every record sent, once; last, `pinpipe poll
# --from-timestamp` replays each stream into the same lake (nothing is added) and into a new one
# (every record lands once). Prints "cargo lambda: N passed, M failed" and fails if M > 0.
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
posts=40            # posts `pinpipe emulate` sends (a pin, a geo and a user record each)
workdir="$(mktemp -d -t pinpipe-lambda.XXXXXX)"
watch_pid=""
extra_pids=() # the process groups of the emulators and consumers started by hand
cleanup() {
  local pid
  for pid in "${extra_pids[@]}" $watch_pid; do
    kill -- -"$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  stop_moto
  rm -rf "$workdir"
}
trap cleanup EXIT
start_moto

echo "== building the functions as cargo lambda watch runs them"
for bin in producer stream-consumer batch-ingest maintenance; do
  cargo build --quiet --bin "$bin"
done
echo "== building the pinpipe CLI (emulate, poll)"
cargo build --quiet --bin pinpipe
target_dir="$(cargo metadata --format-version 1 --no-deps |
  "$PINPIPE_VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
pinpipe="$target_dir/debug/pinpipe"

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
# wait_for_watch PID PORT LOG: until the emulator listens on PORT (or its process is gone). A
# connection only: an HTTP request to / would be an invocation of the default function.
wait_for_watch() {
  local pid=$1 port=$2 log=$3
  for _ in $(seq 1 120); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "cargo lambda watch exited:" >&2; cat "$log" >&2; exit 1
    fi
    sleep 0.5
  done
  echo "cargo lambda watch did not answer on port $port:" >&2; cat "$log" >&2; exit 1
}
wait_for_watch "$watch_pid" "$port" "$workdir/watch.log"

passed=0 failed=0
# invoke FUNCTION EVENT EXPECTED...: passes if the answer (whitespace removed) holds every EXPECTED.
# Bounded: the watch compiles a function when it first starts it (`cargo run`), and a function
# that does not compile never answers.
invoke() {
  local function=$1 event=$2 out
  shift 2
  if ! out="$(cd "$root" && timeout 600 cargo lambda invoke "$function" --invoke-address 127.0.0.1 \
    --invoke-port "$port" --data-file "$event" 2>&1)"; then
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

# Before the first record reaches a stream: where the replays at the end start.
replay_epoch="$(date +%s)"
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
# The whole round over plain HTTP, as a client and Lambda's event source mapping would do it.
api="http://127.0.0.1:$port/lambda-url/producer" # the producer's function URL under cargo lambda watch
# http_check DESCRIPTION STATUS TEXT CURL_ARGS...: passes if curl gets STATUS and a body holding TEXT.
http_check() {
  local what=$1 status=$2 text=$3 out code
  shift 3
  out="$(curl -sS --max-time 120 -w '\n%{http_code}' "$@" 2>&1)" || true
  code="${out##*$'\n'}"
  if [ "$code" = "$status" ] && [[ "$out" == *"$text"* ]]; then
    echo "ok   $what"; passed=$((passed + 1))
  else
    echo "FAIL $what: expected HTTP $status with $text, got: $out"; tail -20 "$workdir/watch.log"; failed=$((failed + 1))
  fi
}
http_check "curl GET /streams through the producer's function URL" 200 "streaming-$prefix-pin" "$api/streams"
http_check "curl PUT .../record through the producer's function URL" 200 '"SequenceNumber"' \
  -X PUT "$api/streams/streaming-$prefix-pin/record" -H 'Content-Type: application/json' \
  -d '{"StreamName": "streaming-'"$prefix"'-pin", "PartitionKey": "curl-1", "Data": {"index": 9001,
       "unique_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "title": "Sent with curl", "follower_count": "12k",
       "tag_list": "Local,Round", "is_image_or_video": "image", "downloaded": 1,
       "save_location": "Local save in /data/travel", "category": "travel"}}'
check "the seeds' client gets 200 and a SequenceNumber for a pin, a geo and a user record" \
  "$PINPIPE_VENV/bin/python" tests/python/seed_client.py "$api" "$prefix"
check "pinpipe emulate sends $posts posts to the producer's function URL" \
  "$pinpipe" emulate --api "$api" --prefix "$prefix" --posts "$posts" --concurrency 4

# lake_holds TABLE EXPECTED [LAKE]: passes if the stream holds EXPECTED records and the lake
# (default $workdir/lake) holds each of them exactly once, as a row of TABLE or of the quarantine.
lake_holds() {
  "$PINPIPE_VENV/bin/python" - "${3:-$workdir/lake}" "$1" "streaming-$prefix-$1" "$2" <<'PY'
import os, sys, boto3, polars as pl
lake, table, stream, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
k = boto3.client("kinesis")
sent = set()
for shard in k.list_shards(StreamName=stream)["Shards"]:
    iterator = k.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    while iterator:
        page = k.get_records(ShardIterator=iterator, Limit=10000)
        sent |= {(shard["ShardId"], r["SequenceNumber"]) for r in page["Records"]}
        iterator = page.get("NextShardIterator") if page["Records"] else None
source = f"kinesis:{stream}/"
rows = pl.read_delta(f"{lake}/{table}", columns=["_source", "_position"]).filter(pl.col("_source").str.starts_with(source))
landed = [(s[len(source):], p) for s, p in zip(rows["_source"], rows["_position"])]
quarantined = 0
if os.path.isdir(f"{lake}/quarantine/_delta_log"):
    q = pl.read_delta(f"{lake}/quarantine", columns=["table", "source", "position"])
    q = q.filter((pl.col("table") == table) & pl.col("source").str.starts_with(source))
    quarantined = q.height
    landed += [(s[len(source):], p) for s, p in zip(q["source"], q["position"])]
problems = []
if len(sent) != expected:
    problems.append(f"{stream} holds {len(sent)} records, {expected} were sent")
if len(landed) != len(set(landed)):
    problems.append(f"{len(landed) - len(set(landed))} records landed twice")
if set(landed) != sent:
    problems.append(f"{len(sent - set(landed))} records missing, {len(set(landed) - sent)} unknown ones")
print(f"     {table}: {rows.height} rows + {quarantined} quarantined for the {len(sent)} records of {stream}")
sys.exit("; ".join(problems) if problems else 0)
PY
}
# poll_once TABLE PORT: `pinpipe poll --once` of TABLE's stream into the consumer on PORT; its
# output is kept in $workdir/poll-TABLE.out.
poll_once() {
  "$pinpipe" poll --once --stream "streaming-$prefix-$1" --function stream-consumer \
    --invoke-url "http://127.0.0.1:$2" --state "$workdir/poll-$1.json" --batch-size 10 --invoke-timeout-secs 600 \
    >"$workdir/poll-$1.out" 2>&1
  local status=$?
  sed 's/^/     /' "$workdir/poll-$1.out"
  return $status
}
# The pin stream holds the sample put-record, the curl record, the seeds' pin and the posts.
check "pinpipe poll --once hands the pin stream to the consumer in batches" poll_once pin "$port"
check "the pin table holds every pin record sent, once" lake_holds pin $((3 + posts))
check "a second pinpipe poll --once sends nothing" \
  bash -c 'poll_out="$("$0" poll --once --stream "streaming-$1-pin" --invoke-url "http://127.0.0.1:$2" --state "$3")" &&
    echo "     $poll_out" && [[ "$poll_out" == *": 0 records done in 0 invocations"* ]]' \
  "$pinpipe" "$prefix" "$port" "$workdir/poll-pin.json"
check "the pin table is unchanged by it" lake_holds pin $((3 + posts))

# The sample event after the round: its made-up sequence numbers (56 digits) are far above moto's
# (1, 2, 3, ...) on the same stream and shard, and had it gone first, the lake's exactly-once
# progress would have taken moto's records for ones already landed.
invoke stream-consumer events/kinesis-pin.json '"batchItemFailures":[]'
check "the consumer wrote the pin table and quarantined the poison record" \
  test -d "$workdir/lake/pin/_delta_log" -a -d "$workdir/lake/quarantine/_delta_log"
invoke batch-ingest events/s3-kafka-connect.json '"objects_read":1' '"rows_written":2' '"quarantined":1'
invoke maintenance events/scheduled.json '"table":"pin"' '"checkpoint_version":' '"skipped":"notableyet"'

# geo and user. cargo lambda watch starts every function with the env of its
# [package.metadata.lambda.env], which wins over --env-var, so the consumer it starts is always
# `pin`. A table's consumer runs instead under an emulator that only serves the Lambda APIs
# (--only-lambda-apis): the binary is started by hand with that table's PINPIPE_TABLE, and polls
# the emulator's runtime API for the invocations of `stream-consumer`.
# start_consumer TABLE LAKE NAME: an emulator and TABLE's consumer writing to LAKE, logs named
# after NAME; sets consumer_port to the emulator's port.
start_consumer() {
  local table=$1 lake=$2 name=$3
  consumer_port="$(free_port)"
  (cd "$workdir" && exec setsid cargo lambda watch --manifest-path "$root/Cargo.toml" --only-lambda-apis \
    -A 127.0.0.1 -P "$consumer_port" >"$workdir/watch-$name.log" 2>&1) &
  extra_pids+=($!)
  wait_for_watch "$!" "$consumer_port" "$workdir/watch-$name.log"
  (cd "$workdir" && AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$consumer_port/.rt/stream-consumer" \
    AWS_LAMBDA_FUNCTION_NAME=stream-consumer AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=4096 \
    PINPIPE_TABLE="$table" PINPIPE_LAKE_URI="$lake" \
    exec setsid "$target_dir/debug/stream-consumer" >"$workdir/consumer-$name.log" 2>&1) &
  extra_pids+=($!)
}
declare -A table_port=([pin]="$port") # the emulator each table's consumer into $workdir/lake serves on
for table in geo user; do
  start_consumer "$table" "$workdir/lake" "$table"
  table_port[$table]="$consumer_port"
  check "pinpipe poll --once hands the $table stream to a $table consumer (--only-lambda-apis)" \
    poll_once "$table" "$consumer_port"
done
# The records of each stream: pin, the sample put-record, the curl record, the seeds' pin and the
# posts; geo, the 3 sample put-records, the seeds' geo and the posts; user, the seeds' user and the
# posts.
declare -A sent=([pin]=$((3 + posts)) [geo]=$((3 + 1 + posts)) [user]=$((1 + posts)))
check "the geo table holds every geo record sent, once" lake_holds geo "${sent[geo]}"
check "the user table holds every user record sent, once" lake_holds user "${sent[user]}"

# Replays from before the first record, each with a state file of its own: RFC 3339 into the same
# lake, epoch seconds into a new one.
replay_from="$(date -d "@$replay_epoch" +%Y-%m-%dT%H:%M:%S%:z)"
# replay TABLE PORT FROM STATE: `pinpipe poll --once --from-timestamp FROM --state STATE` of TABLE's
# stream into the consumer on PORT; passes if it reports every record of the stream done. Its
# output is kept in STATE.out.
replay() {
  local table=$1
  "$pinpipe" poll --once --stream "streaming-$prefix-$table" --function stream-consumer \
    --invoke-url "http://127.0.0.1:$2" --from-timestamp "$3" --state "$4" --batch-size 10 \
    --invoke-timeout-secs 600 >"$4.out" 2>&1
  local status=$?
  sed 's/^/     /' "$4.out"
  [ "$status" -eq 0 ] && grep -q ": ${sent[$table]} records done in " "$4.out"
}
# lake_counts LAKE TABLE: the rows of TABLE and of the quarantine.
lake_counts() {
  "$PINPIPE_VENV/bin/python" - "$1" "$2" <<'PY'
import os, sys, polars as pl
lake, table = sys.argv[1], sys.argv[2]
count = lambda name: pl.read_delta(f"{lake}/{name}").height if os.path.isdir(f"{lake}/{name}/_delta_log") else 0
print(f"{count(table)} {table} rows, {count('quarantine')} quarantined")
PY
}
# consumer_skipped LOG LINE EXPECTED: passes if the consumer's JSON log lines after line LINE of LOG
# report batches of EXPECTED records in all, each "already committed ...; nothing written".
consumer_skipped() {
  "$PINPIPE_VENV/bin/python" - "$@" <<'PY'
import json, sys, time
log, skip, expected = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(50):  # the emulator may pass the function's output on a moment later
    batches = []
    for line in open(log, errors="replace").read().splitlines()[skip:]:
        try:
            event = json.loads(line[line.index('{"'):])
        except ValueError:
            continue
        fields = event.get("fields", event)
        if "records_in" in fields:
            batches.append((fields["records_in"], fields.get("message", "")))
    if sum(n for n, _ in batches) >= expected:
        break
    time.sleep(0.1)
records, written = sum(n for n, _ in batches), [m for _, m in batches if "nothing written" not in m]
print(f"     the consumer: {len(batches)} batches, {records} records in, {len(written)} batches written")
sys.exit(0 if records == expected and not written else f"expected {expected} records, all already committed")
PY
}
# replay_adds_nothing TABLE LOG: a replay of TABLE's stream into the lake that holds it already
# sends every record, and the consumer (logging to LOG) skips them all as already committed (the
# table's recorded progress): the row counts and the regular state file are unchanged.
replay_adds_nothing() {
  local table=$1 log=$2 before after regular lines
  before="$(lake_counts "$workdir/lake" "$table")" || return 1
  regular="$(cksum <"$workdir/poll-$table.json")"
  lines="$(wc -l <"$log")"
  replay "$table" "${table_port[$table]}" "$replay_from" "$workdir/replay-$table.json" || return 1
  consumer_skipped "$log" "$lines" "${sent[$table]}" || return 1
  after="$(lake_counts "$workdir/lake" "$table")" || return 1
  echo "     before the replay: $before; after: $after"
  [ "$before" = "$after" ] && [ "$(cksum <"$workdir/poll-$table.json")" = "$regular" ]
}
# (The pin table also holds events/kinesis-pin.json's made-up sequence numbers, above all of moto's
# on the same shard, so its replay would be skipped even had a record been missing; geo and user
# recorded moto's own last sequence numbers.)
declare -A consumer_log=([pin]="$workdir/watch.log" [geo]="$workdir/consumer-geo.log" [user]="$workdir/consumer-user.log")
for table in pin geo user; do
  check "a replay of the $table stream into the same lake (--from-timestamp $replay_from) adds no row" \
    replay_adds_nothing "$table" "${consumer_log[$table]}"
done
# The replay's time is honoured: from now, after every record, there is nothing to send.
check "a replay from now sends nothing" bash -c '"$0" poll --once --stream "streaming-$1-geo" \
  --invoke-url "http://127.0.0.1:$2" --from-timestamp "$(date +%s)" --state "$3" >"$3.out" 2>&1; status=$?
  sed "s/^/     /" "$3.out"; [ "$status" -eq 0 ] && grep -q ": 0 records done in 0 invocations" "$3.out"' \
  "$pinpipe" "$prefix" "${table_port[geo]}" "$workdir/replay-now-geo.json"
for table in pin geo user; do
  start_consumer "$table" "$workdir/lake-replay" "replay-$table"
  check "a replay of the $table stream into a new lake (--from-timestamp $replay_epoch) sends every record" \
    replay "$table" "$consumer_port" "$replay_epoch" "$workdir/replay-new-$table.json"
  check "the new lake's $table table holds every $table record sent, once" \
    lake_holds "$table" "${sent[$table]}" "$workdir/lake-replay"
done

echo "cargo lambda: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
