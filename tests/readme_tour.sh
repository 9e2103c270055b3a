#!/usr/bin/env bash
# Runs the README's grpcurl and curl tour verbatim against the release binary, started
# the way the README says (`cargo run --release`, no settings, from the
# repository root). Usage: bash tests/readme_tour.sh [path/to/grpcurl-dir]
set -euo pipefail
cd "$(dirname "$0")/.."

# grpcurl and jq must be on PATH; the conformance venv has grpcurl.
if [ -d target/conformance-venv/bin ]; then
  export PATH="$PWD/target/conformance-venv/bin:$PATH"
fi
for tool in grpcurl jq curl; do
  command -v "$tool" >/dev/null || { echo "readme-tour: $tool is not on PATH" >&2; exit 1; }
done

# Run the server as a newcomer would: no TOKEND_* or DATABASE_URL settings.
for var in $(env | grep -oE '^(TOKEND_[A-Z0-9_]+|DATABASE_URL)='); do unset "${var%=}"; done
had_data=0; [ -e data ] && had_data=1

cargo build --release --quiet
log=$(mktemp)
target/release/tokend >"$log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  [ "$had_data" = 1 ] || rm -rf data
  rm -f "$log" "$tour"
}
tour=$(mktemp)
trap cleanup EXIT

deadline=$((SECONDS + 30))
until grpcurl -plaintext -d '{"service":"tokend.v1.TokenService"}' 127.0.0.1:50051 grpc.health.v1.Health/Check 2>/dev/null | grep -q SERVING; do
  if [ $SECONDS -ge $deadline ] || ! kill -0 "$server" 2>/dev/null; then
    echo "readme-tour: tokend did not become ready" >&2; cat "$log" >&2; exit 1
  fi
  sleep 0.2
done

# Make sure it is our server that answered, not another on the same port.
kill -0 "$server" 2>/dev/null || { echo "readme-tour: tokend exited:" >&2; cat "$log" >&2; exit 1; }

# The block between the tour markers, without its code fences.
sed -n '/<!-- tour:start -->/,/<!-- tour:end -->/p' README.md | grep -v -e '^<!--' -e '^```' > "$tour"
[ -s "$tour" ] || { echo "readme-tour: no tour found in README.md" >&2; exit 1; }
out=$(bash -euo pipefail "$tour" 2>&1) || { echo "$out"; echo "readme-tour: FAILED" >&2; exit 1; }
echo "$out" | tail -n 20
# What the tour must show: a revoked token rejected, and the audit trail.
grep -q 'TOKEN_REVOKED' <<<"$out" || { echo "readme-tour: no TOKEN_REVOKED in the output" >&2; exit 1; }
grep -q 'urn:tokend:problem:token-revoked' <<<"$out" || { echo "readme-tour: the REST face's problem+json is missing" >&2; exit 1; }
grep -q 'workspace_api_key_deleted' <<<"$out" || { echo "readme-tour: audit trail incomplete" >&2; exit 1; }
echo "readme-tour: the README tour ran verbatim"
