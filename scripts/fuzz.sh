#!/usr/bin/env bash
# Fuzzes the cleaning code (decode + clean of every table) with cargo-fuzz / libFuzzer.
#
#   scripts/fuzz.sh                 # every target, 60 s each
#   scripts/fuzz.sh 600             # every target, 600 s each
#   scripts/fuzz.sh 300 clean       # one target (clean or clean_structured)
#
# Installs cargo-fuzz (crates.io) if it is missing. The fuzz crate needs nightly-only rustc
# flags; on the stable toolchain RUSTC_BOOTSTRAP=1 unlocks them for this build only. Builds go
# to $CARGO_TARGET_DIR (default: fuzz/target), with debug assertions and overflow checks on and
# no sanitizer (the cleaning code is safe Rust; set FUZZ_SANITIZER=address to add ASan).
# Findings land in fuzz/artifacts/<target>/; reproduce one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -a -s none <target> fuzz/artifacts/<target>/<file>
# The working corpus is fuzz/corpus/<target>/ (not committed); fuzz/seeds/ is the committed seed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/fuzz"

seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(clean clean_structured)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
target_dir="${CARGO_TARGET_DIR:-$root/fuzz/target}"
sanitizer="${FUZZ_SANITIZER:-none}"
build=(-a -s "$sanitizer" --target-dir "$target_dir")

for target in "${targets[@]}"; do
  corpus="corpus/$target"
  mkdir -p "$corpus" "artifacts/$target"
  seeds=()
  # The raw-bytes target starts from realistic records; the structured one from its own corpus.
  [ "$target" = clean ] && seeds=(seeds/clean)
  echo "== fuzzing $target for ${seconds}s"
  cargo fuzz run "${build[@]}" "$target" "$corpus" "${seeds[@]}" -- \
    -max_total_time="$seconds" -dict=clean.dict -max_len=4096 -print_final_stats=1
done
