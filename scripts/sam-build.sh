#!/usr/bin/env bash
# Builds the Lambda functions the way a deploy does, with `sam build`, and checks what it made:
# lints the template (`sam validate --lint`), runs `sam build` for the given Architecture
# (x86_64 unless told, the only Rust target installed here), then checks each function's
# bootstrap (.aws-sam/build/<FunctionLogicalId>/, or <first function>-Shared/ for functions
# that share a build, as the three consumers do) and prints its size and the size of its zip as
# `sam deploy` uploads it, which is what Lambda downloads at a cold start. Exits non-zero on any
# failure.
#
#   scripts/sam-build.sh            # Architecture=x86_64
#   scripts/sam-build.sh arm64      # needs the aarch64-unknown-linux-gnu Rust target
#
# SAM's rust-cargolambda build runs `cargo lambda build --release [--arm64] --bin <Binary>` in
# the function's CodeUri (functions/<package>), so cargo selects that one package of the
# workspace and resolves its features alone. It keeps CARGO_TARGET_DIR when it is set (else it
# sets it to the workspace's target/), so the release build cache is shared with other builds.
# Nothing reaches AWS: fake credentials, a fixed region, no telemetry.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh

architecture="${1:-x86_64}"
case "$architecture" in
  x86_64) rust_target=x86_64-unknown-linux-gnu ;;
  arm64) rust_target=aarch64-unknown-linux-gnu ;;
  *) echo "usage: scripts/sam-build.sh [x86_64|arm64]" >&2; exit 2 ;;
esac

fail() { echo "sam-build: $*" >&2; exit 1; }

install_venv "$PINPIPE_VENV" "$root/scripts/requirements.txt"
export PATH="$PINPIPE_VENV/bin:$PATH"   # sam, and the cargo-lambda it runs
[ "$(command -v cargo-lambda)" = "$PINPIPE_VENV/bin/cargo-lambda" ] \
  || fail "cargo-lambda should come from $PINPIPE_VENV, found $(command -v cargo-lambda || echo nothing)"

export SAM_CLI_TELEMETRY=0
export AWS_ACCESS_KEY_ID=pinpipe-sam-build AWS_SECRET_ACCESS_KEY=pinpipe-sam-build
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL

# Function logical id -> the package's binary that it runs (template.yaml, BuildProperties.Binary).
functions=(
  ProducerFunction=producer
  PinConsumerFunction=stream-consumer
  GeoConsumerFunction=stream-consumer
  UserConsumerFunction=stream-consumer
  BatchIngestFunction=batch-ingest
  MaintenanceFunction=maintenance
)

echo "== sam validate --lint"
sam validate --lint --template-file template.yaml || fail "sam validate --lint failed (above)"

cargo metadata --locked --quiet --format-version 1 --filter-platform "$rust_target" >/dev/null \
  || fail "Cargo.lock is not up to date with the manifests (cargo metadata --locked, above)"
lock_before="$(sha256sum Cargo.lock)"
target_dir="$(cargo metadata --locked --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

# SAM runs `cargo lambda build` with the first cargo on PATH and has no setting for more flags.
# This cargo adds --locked to it (so the build fails rather than update Cargo.lock) and notes
# each command line, its directory and its duration; anything else goes to cargo unchanged.
shim="$(mktemp -d -t pinpipe-sam-cargo.XXXXXX)"
trap 'rm -rf "$shim"' EXIT
cat >"$shim/cargo" <<SHIM
#!/usr/bin/env bash
if [ "\${1:-}" = lambda ] && [ "\${2:-}" = build ]; then
  start=\$(date +%s)
  status=0
  "$(command -v cargo)" lambda build --locked "\${@:3}" || status=\$?
  echo "\$(( \$(date +%s) - start )) s  in \${PWD#$root/}: cargo \$* (exit \$status)" >>"$shim/commands"
  exit \$status
fi
exec "$(command -v cargo)" "\$@"
SHIM
chmod +x "$shim/cargo"

echo "== sam build --parameter-overrides Architecture=$architecture (cargo target dir $target_dir)"
rm -rf .aws-sam/build   # no artifact of an earlier build passes the checks below
build_start=$(date +%s)
status=0
PATH="$shim:$PATH" sam build --beta-features --template-file template.yaml \
  --parameter-overrides "Architecture=$architecture" || status=$?
build_seconds=$(( $(date +%s) - build_start ))
echo "-- what SAM ran (the cargo above adds --locked)"
cat "$shim/commands" 2>/dev/null || echo "(no cargo lambda build)"
[ "$status" -eq 0 ] || fail "sam build failed (above)"
[ "$(sha256sum Cargo.lock)" = "$lock_before" ] \
  || fail "Cargo.lock changed while sam build ran (was a Cargo.toml edited meanwhile?)"

# The built template names each function's artifact directory: .aws-sam/build/<function>/, or
# one <first function>-Shared/ for the functions of one build (the three consumers).
echo "== the artifacts (.aws-sam/build/template.yaml's CodeUri/bootstrap)"
"$PINPIPE_VENV/bin/python" - "$architecture" "$target_dir" "${functions[@]}" <<'EOF' \
  || fail "artifact check failed (above)"
import hashlib, os, struct, sys, tempfile, zipfile
from samcli.lib.package.utils import make_zip_with_lambda_permissions
from samcli.yamlhelper import yaml_parse

architecture, target_dir, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
build_dir = os.path.join(".aws-sam", "build")
with open(os.path.join(build_dir, "template.yaml")) as f:
    resources = yaml_parse(f.read())["Resources"]
built = {
    name: r for name, r in resources.items()
    if r.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function")
}
machine = {"x86_64": (62, "x86-64"), "arm64": (183, "AArch64")}[architecture]
# A binary with pinpipe's Delta side has these; the producer must not, or it was built with
# the features of another package (feature unification across the workspace).
delta_markers = [b"deltalake", b"_delta_log"]
# No function links the CLI's query engine.
datafusion_markers = [b"datafusion"]

errors, rows, zips = [], [], {}
expected = dict(pair.split("=") for pair in pairs)
for function in sorted(set(built) - set(expected)):
    errors.append(f"{function}: a function this script does not know; add it to scripts/sam-build.sh")
for function, binary in expected.items():
    if function not in built:
        errors.append(f"{function}: not in the built template")
        continue
    named = ((built[function].get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
    if named != binary:
        errors.append(f"{function}: BuildProperties.Binary is {named!r}, expected {binary!r}")
    code_uri = (built[function].get("Properties") or {}).get("CodeUri")
    if not isinstance(code_uri, str):
        errors.append(f"{function}: the built template has no local CodeUri ({code_uri!r})")
        continue
    path = os.path.join(build_dir, code_uri, "bootstrap")
    if not os.path.isfile(path):
        errors.append(f"{function}: {path} is missing")
        continue
    data = open(path, "rb").read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        errors.append(f"{function}: {path} is not a 64-bit little-endian ELF file")
        continue
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    if e_machine != machine[0] or e_type not in (2, 3):
        errors.append(f"{function}: {path} is not a {machine[1]} executable (e_type {e_type}, e_machine {e_machine})")
    if not os.access(path, os.X_OK):
        errors.append(f"{function}: {path} is not executable")
    cargo_lambda_output = os.path.join(target_dir, "lambda", binary, "bootstrap")
    if not os.path.isfile(cargo_lambda_output) or open(cargo_lambda_output, "rb").read() != data:
        errors.append(f"{function}: {path} is not cargo lambda's {cargo_lambda_output}")
    has_delta = [m.decode() for m in delta_markers if m in data]
    if binary == "producer" and has_delta:
        errors.append(f"{function}: the producer contains {has_delta}: it was built with the Delta side")
    if binary != "producer" and len(has_delta) != len(delta_markers):
        errors.append(f"{function}: {binary} lacks some of {[m.decode() for m in delta_markers]}")
    has_datafusion = [m.decode() for m in datafusion_markers if m in data]
    if has_datafusion:
        errors.append(f"{function}: {binary} contains {has_datafusion}: it links DataFusion")
    digest = hashlib.sha256(data).hexdigest()
    if digest not in zips:
        # The zip Lambda gets: the artifact directory zipped (deflate) by SAM's own packaging code,
        # as `sam deploy` uploads it.
        with tempfile.TemporaryDirectory() as tmp:
            archive = make_zip_with_lambda_permissions(os.path.join(tmp, "function"), os.path.dirname(path))
            with zipfile.ZipFile(archive) as z:
                names = z.namelist()
            if names != ["bootstrap"]:
                errors.append(f"{function}: its zip holds {names}, not just bootstrap")
            zips[digest] = os.path.getsize(archive)
    rows.append((function, binary, path, len(data), zips[digest], digest))

# One binary per package: the three consumers share one, the packages' binaries all differ.
by_binary = {}
for function, binary, _, _, _, digest in rows:
    by_binary.setdefault(binary, set()).add(digest)
for binary, digests in by_binary.items():
    if len(digests) != 1:
        errors.append(f"the functions running {binary} got different binaries")
firsts = {binary: next(iter(d)) for binary, d in by_binary.items()}
if len(set(firsts.values())) != len(firsts):
    errors.append(f"two packages got the same binary: {firsts}")

mb = lambda n: f"{n / 1e6:.1f} MB"
print(f"{'function':<22} {'binary':<16} {'bootstrap':>10} {'zip':>10}  artifact")
for function, binary, path, size, zipped, _ in rows:
    print(f"{function:<22} {binary:<16} {mb(size):>10} {mb(zipped):>10}  {path}")
for error in errors:
    print(f"error: {error}", file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
echo "sam build took $build_seconds s; artifacts in .aws-sam/build ok"
