#!/usr/bin/env bash
# Builds every fuzz target in fuzz/ (so that the fuzz targets always build in
# CI), then runs each one briefly as a smoke test. Running them for long is
# a manual step: docs/fuzzing.md.
#
# Stable toolchain, no cargo-fuzz needed: this passes the instrumentation
# flags `cargo fuzz build --dev --sanitizer none` would (none of them is a -Z
# flag), into a dedicated profile without optimisation or debug info, which
# is the quickest real build. Output goes to fuzz/target (gitignored).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

triple="$(rustc -vV | sed -n 's/^host: //p')"
flags="-Cpasses=sancov-module"
flags+=" -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
flags+=" -Cllvm-args=-sanitizer-coverage-pc-table"
flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares"
flags+=" -Cllvm-args=-sanitizer-coverage-stack-depth"
flags+=" -Cllvm-args=-simplifycfg-branch-fold-threshold=0"
flags+=" --cfg fuzzing -Cdebug-assertions"
# --target keeps these flags away from build scripts and proc macros, as
# cargo-fuzz does. fuzz/Cargo.lock is not --locked: a dependency the lead
# adds to tokend is then resolved here instead of failing the build.
RUSTFLAGS="$flags ${RUSTFLAGS:-}" cargo build \
  --manifest-path Cargo.toml --target-dir target \
  --profile fuzz-ci --target "$triple" --bins

targets=(secret_parse jwt_verify request_validation)
for target in "${targets[@]}"; do
  bin="target/$triple/fuzz-ci/$target"
  [ -x "$bin" ] || { echo "fuzz-build: $bin was not built" >&2; exit 1; }
  # A few thousand inputs from nothing: proves the binary links libFuzzer
  # and that the target's own assertions hold on its first inputs.
  "$bin" -runs=2000 -seed=1 -max_len=4096 2>&1 | tail -n 1
done
echo "fuzz-build: ${#targets[@]} targets built and smoke-tested"
