#!/usr/bin/env bash
# pinpipe's test command: installs what the tests need, starts a moto server (S3 + Kinesis)
# on 127.0.0.1 on a free port, runs every test against it, and stops it again.
#
#   scripts/test.sh            # all tests
#   scripts/test.sh -p pinpipe # extra arguments go to `cargo test`
#
# Honours CARGO_TARGET_DIR. The Python tools live in a virtualenv at $PINPIPE_VENV
# (default: .venv in the repository).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh

ensure_venv
PINPIPE_INTEROP_DIR="$(mktemp -d -t pinpipe-interop.XXXXXX)"
export PINPIPE_INTEROP_DIR
trap 'stop_moto; rm -rf "$PINPIPE_INTEROP_DIR"' EXIT
start_moto

PINPIPE_TEST_OUTPUT="$(mktemp -t pinpipe-test.XXXXXX)"
trap 'stop_moto; rm -rf "$PINPIPE_INTEROP_DIR" "$PINPIPE_TEST_OUTPUT"' EXIT

echo "== cargo test (moto at $AWS_ENDPOINT_URL)"
cargo test --workspace --locked "$@" 2>&1 | tee "$PINPIPE_TEST_OUTPUT"
passed=$(grep -oE '^test result: [a-zA-Z]+\. [0-9]+ passed' "$PINPIPE_TEST_OUTPUT" | awk '{s+=$4} END {print s+0}')

if [ "$#" -eq 0 ]; then
  echo "== other engines read pinpipe's tables"
  "$PINPIPE_VENV/bin/python" tests/python/read_tables.py
  passed=$((passed + 1))

  # The deployment template: no cfn-lint error or warning (SAM transformed with
  # aws-sam-translator), and no failed checkov check that the template does not skip with a
  # reason. --skip-download keeps checkov off the network.
  echo "== cfn-lint template.yaml"
  "$PINPIPE_VENV/bin/cfn-lint" template.yaml
  passed=$((passed + 1))
  echo "== checkov template.yaml"
  "$PINPIPE_CHECKOV_VENV/bin/checkov" -f template.yaml --quiet --compact --skip-download
  passed=$((passed + 1))

  # The real function binaries under `cargo lambda watch`, invoked with events/ (about a minute
  # once the functions are built; it starts its own moto).
  echo "== the functions under cargo lambda watch"
  scripts/lambda-local.sh 2>&1 | tee -a "$PINPIPE_TEST_OUTPUT"
  passed=$((passed + $(sed -n 's/^cargo lambda: \([0-9]*\) passed, 0 failed$/\1/p' "$PINPIPE_TEST_OUTPUT")))
fi
echo "pinpipe: $passed passed, 0 failed"
