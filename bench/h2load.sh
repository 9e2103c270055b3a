#!/usr/bin/env bash
# h2load cross-check of one workload (AuthenticateToken hits); docs/benchmarks.md.
#
#   bash bench/h2load.sh                      # SQLite, 1M tokens
#   BACKEND=postgres TOKENS=10000 bash bench/h2load.sh
#
# The load tool (tools/load) seeds and starts tokend, exports the addresses,
# one hit secret and the gateway JWT, then pauses while h2load runs;
# afterwards it measures health-check and auth-hit itself on the same server,
# so both figures come from one run. h2load counts HTTP 200s only: a gRPC
# error is also a 200, so the server's tokend_grpc_requests_total{code}
# counters are read before and after.
# Needs: apt-get install -y nghttp2-client (h2load), python3, curl.
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND=${BACKEND:-sqlite}
TOKENS=${TOKENS:-1000000}
WARMUP=${WARMUP:-5}
DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-4}
STREAMS=${STREAMS:-16}          # CONNECTIONS × STREAMS = calls in flight (64)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pause=$((WARMUP + DURATION + 15))

cargo build --release --workspace # tokend and tokend-load, side by side
"${CARGO_TARGET_DIR:-target}/release/tokend-load" --backend "$BACKEND" --tokens "$TOKENS" \
  --export "$work/env" --pause "${pause}s" --workloads health,auth-hit \
  --warmup "${WARMUP}s" --duration "${DURATION}s" >"$work/harness.txt" 2>&1 &
harness=$!

for _ in $(seq 1 600); do
  [ -s "$work/env" ] && break
  kill -0 "$harness" 2>/dev/null || { cat "$work/harness.txt"; exit 1; }
  sleep 1
done
# shellcheck disable=SC1091
source "$work/env"
sleep 3 # the harness samples idle RSS first

# The request body: a 5-byte gRPC frame prefix (0 = uncompressed, then the
# message length as a 4-byte big-endian integer) and the protobuf
# AuthenticateTokenRequest { secret = 1 }.
python3 - "$HIT_SECRET" "$work/auth-hit.bin" <<'PY'
import struct, sys
secret = sys.argv[1].encode()
assert len(secret) < 128                     # one-byte varint length
message = b"\x0a" + bytes([len(secret)]) + secret   # field 1, wire type 2
open(sys.argv[2], "wb").write(b"\x00" + struct.pack(">I", len(message)) + message)
PY

counters() {
  curl -sf -H "Authorization: Bearer $METRICS_SECRET" "http://$HTTP_ADDR/metrics" |
    grep '^tokend_grpc_requests_total{.*AuthenticateToken' || true
}
counters >"$work/before.txt"

h2load -c "$CONNECTIONS" -m "$STREAMS" -t 1 --warm-up-time="$WARMUP" -D "$DURATION" \
  -d "$work/auth-hit.bin" \
  -H 'content-type: application/grpc' -H 'te: trailers' \
  -H "authorization: $GATEWAY_AUTH" \
  "http://$GRPC_ADDR/tokend.v1.TokenService/AuthenticateToken" | tee "$work/h2load.txt"

counters >"$work/after.txt"
echo "--- server counters (AuthenticateToken), before -> after:"
join -a2 <(sed 's/ / /' "$work/before.txt" | sort) <(sort "$work/after.txt") |
  awk '{ before = (NF == 3) ? $2 : 0; after = $NF; printf "%s  +%d\n", $1, after - before }'

wait "$harness" || true
echo "--- the harness, same server, after h2load:"
grep -E '^\| (health-check|auth-hit) |start-up|idle RSS|run ' "$work/harness.txt"
