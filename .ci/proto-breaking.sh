#!/usr/bin/env bash
# buf breaking: proto/ must be wire- and source-compatible with proto/ at the
# commit named in .ci/proto-baseline (rules: `breaking` in proto/buf.yaml), so
# that no field is renumbered, retyped or dropped by accident.
#
# Needs the baseline commit in the local clone: CI must check out the full
# history (a shallow clone fails here, loudly, instead of skipping).
set -euo pipefail
cd "$(dirname "$0")/.."

buf=${BUF:-target/ci-node/node_modules/.bin/buf}
[ -x "$buf" ] || { echo "proto-breaking: no buf at $buf (.ci/run installs it)" >&2; exit 1; }

baseline=$(grep -v -e '^#' -e '^[[:space:]]*$' .ci/proto-baseline || true)
if ! [[ "$baseline" =~ ^[0-9a-f]{40}$ ]]; then
  echo "proto-breaking: .ci/proto-baseline must hold one full commit hash, found: '$baseline'" >&2
  exit 1
fi
if ! git cat-file -e "${baseline}^{commit}" 2>/dev/null; then
  echo "proto-breaking: baseline commit $baseline is not in this clone." >&2
  if [ "$(git rev-parse --is-shallow-repository 2>/dev/null)" = true ]; then
    echo "proto-breaking: this is a shallow clone; run 'git fetch --unshallow' (or check out with full history)." >&2
  fi
  exit 1
fi
if ! git cat-file -e "${baseline}:proto/buf.yaml" 2>/dev/null; then
  echo "proto-breaking: baseline commit $baseline has no proto/buf.yaml" >&2
  exit 1
fi

echo "proto-breaking: proto/ against $baseline"
"$buf" breaking proto --against ".git#ref=${baseline},subdir=proto"
echo "proto-breaking: no breaking change"
