#!/usr/bin/env bash
# The h2load benchmark, one command per backend; docs/benchmarks.md.
#
#   bash bench/h2load.sh                                  # SQLite, 1M tokens
#   BACKEND=postgres bash bench/h2load.sh                 # + pgbench, revoke
#   BACKEND=postgres TOKENS=10000 DURATION=5 bash bench/h2load.sh
#
# The load tool (tools/load) seeds and starts tokend, exports the addresses,
# hit secrets and the gateway JWT, then pauses while h2load (a C client:
# little client CPU taken from the server) runs, on the same server:
#
#   health-4x16     Health/Check, 4 connections x 16 streams (64 in flight)
#   auth-4x16       AuthenticateToken, 4 x 16, ONE hit secret repeated
#   health-64x1     Health/Check, 64 h2load processes x 1 stream
#   auth-64x1       AuthenticateToken, 64 processes x 1 stream, 64 DISTINCT
#                   hit secrets (no batch ever holds a secret twice)
#   auth-64x1-one   the same with ONE secret: what a repeated secret flatters
#   health-1, auth-1  one call in flight (latency of a lone call)
#   revoke-64x1     (PostgreSQL runs) the REST seed route DELETE
#                   /api/v2/personal_access_tokens/{id}, 64 h2load processes
#                   x 1 call over HTTP/1.1, each revoking its own share of the
#                   seeded personal-access-token pool once (h2load sends one
#                   body to every URI, so gRPC revokes of distinct tokens
#                   cannot be driven by it; the REST route runs the same core
#                   revoke and the same statement). Timed from the first call
#                   sent to the last answered, no warm-up; every answer must
#                   be a 2xx and tokend_revocations_total must grow by the
#                   number of calls.
#
# Latency percentiles come from h2load's per-request log (--log-file),
# counting only requests started after the warm-up. h2load counts HTTP
# 200s, and a gRPC error is a 200 too, so the server's
# tokend_grpc_requests_total{method,code} is read before and after each run:
# every run must show code="Ok" only (at the end of a timed run h2load
# abandons the calls still in flight, at most 64; the server may count
# those as "Unknown"). Afterwards the tool runs its own
# (tonic) workloads on the same server (WORKLOADS), and on PostgreSQL
# pgbench on the same database.
#
# Needs: h2load (apt-get install -y nghttp2-client), python3, curl, and
# pgbench for PostgreSQL. BUILD=0 skips `cargo build --release --workspace`;
# TOOL=path/to/tokend-load runs another build (e.g. a copy of the binaries).
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND=${BACKEND:-sqlite}
TOKENS=${TOKENS:-1000000}
WARMUP=${WARMUP:-3}
DURATION=${DURATION:-10}
BUILD=${BUILD:-1}
# The load tool; it starts the `tokend` next to it (or $TOKEND_BIN).
TOOL=${TOOL:-${CARGO_TARGET_DIR:-target}/release/tokend-load}
if [ "$BACKEND" = postgres ]; then
  # No revoke-pat: h2load's revoke-64x1 revokes that pool.
  WORKLOADS=${WORKLOADS:-health,auth-hit,revoke-scrape,create}
  default_runs="health-4x16 auth-4x16 health-64x1 auth-64x1 auth-64x1-one health-1 auth-1 revoke-64x1"
else
  WORKLOADS=${WORKLOADS:-health,auth-hit,revoke-scrape}
  default_runs="health-4x16 auth-4x16 health-64x1 auth-64x1 auth-64x1-one health-1 auth-1"
fi
# RUNS="health-1 auth-1" (space-separated) runs a subset.
read -r -a RUNS <<<"${RUNS:-$default_runs}"

work=$(mktemp -d)
keep_work=${KEEP_WORK:-0}
trap '[ "$keep_work" = 1 ] || rm -rf "$work"' EXIT
pause=$(((WARMUP + DURATION + 4) * ${#RUNS[@]} + 10))
# revoke-64x1 runs until its pool is spent (50k tokens at 1M): allow for it.
case " ${RUNS[*]} " in *" revoke-64x1 "*) pause=$((pause + 60)) ;; esac

if [ "$BUILD" = 1 ]; then
  cargo build --release --workspace # tokend and tokend-load, side by side
fi
"$TOOL" --backend "$BACKEND" --tokens "$TOKENS" \
  --export "$work/env" --pause "${pause}s" --workloads "$WORKLOADS" \
  --pgbench-seconds "${PGBENCH_SECONDS:-20}" \
  --warmup "${WARMUP}s" --duration "${DURATION}s" >"$work/harness.txt" 2>&1 &
harness=$!

for _ in $(seq 1 900); do
  [ -s "$work/env" ] && break
  kill -0 "$harness" 2>/dev/null || { cat "$work/harness.txt"; exit 1; }
  sleep 1
done
# shellcheck disable=SC1091
source "$work/env"
sleep 3 # the harness samples idle RSS first
idle_rss=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status")

# Request bodies: a 5-byte gRPC frame prefix (0 = uncompressed, then the
# message length as a 4-byte big-endian integer) and the protobuf message,
# here one length-delimited field 1: AuthenticateTokenRequest { secret } or
# HealthCheckRequest { service }.
frame() { # $1 = field-1 string, $2 = output file
  python3 - "$1" "$2" <<'PY'
import struct, sys
value = sys.argv[1].encode()
assert len(value) < 128                     # one-byte varint length
message = b"\x0a" + bytes([len(value)]) + value
open(sys.argv[2], "wb").write(b"\x00" + struct.pack(">I", len(message)) + message)
PY
}
frame tokend.v1.TokenService "$work/health.bin"
frame "$HIT_SECRET" "$work/auth.bin"
read -r -a secrets <<<"$HIT_SECRETS"
for i in $(seq 0 63); do frame "${secrets[$i]}" "$work/auth-$i.bin"; done

AUTH_URL="http://$GRPC_ADDR/tokend.v1.TokenService/AuthenticateToken"
HEALTH_URL="http://$GRPC_ADDR/grpc.health.v1.Health/Check"

counters() {
  curl -sf -H "Authorization: Bearer $METRICS_SECRET" "http://$HTTP_ADDR/metrics" |
    grep -E '^tokend_(grpc_requests|revocations|db_statements)_total\{' || true
}

# h2load NAME URL BODY CONNECTIONS STREAMS [LOG]
one_h2load() {
  h2load -c "$4" -m "$5" -t 1 --warm-up-time="$WARMUP" -D "$DURATION" -d "$3" \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    -H "authorization: $GATEWAY_AUTH" --log-file="$6" "$2"
}

run() { # NAME
  local name=$1 started
  counters >"$work/$name.before"
  started=$(date +%s%N)
  echo "$started" >"$work/$name.started"
  case "$name" in
  health-4x16) one_h2load "$name" "$HEALTH_URL" "$work/health.bin" 4 16 "$work/$name.log.0" >"$work/$name.out.0" ;;
  auth-4x16) one_h2load "$name" "$AUTH_URL" "$work/auth.bin" 4 16 "$work/$name.log.0" >"$work/$name.out.0" ;;
  health-1) one_h2load "$name" "$HEALTH_URL" "$work/health.bin" 1 1 "$work/$name.log.0" >"$work/$name.out.0" ;;
  auth-1) one_h2load "$name" "$AUTH_URL" "$work/auth.bin" 1 1 "$work/$name.log.0" >"$work/$name.out.0" ;;
  revoke-64x1)
    local pids=() i
    split -n r/64 -d -a 2 "$REVOKE_URIS" "$work/revoke-uris."
    for i in $(seq -w 0 63); do
      h2load --h1 -c 1 -m 1 -t 1 -n "$(wc -l <"$work/revoke-uris.$i")" -i "$work/revoke-uris.$i" \
        -H ':method: DELETE' -H "authorization: $ADMIN_AUTH" \
        --log-file="$work/$name.log.$i" >"$work/$name.out.$i" &
      pids+=($!)
    done
    wait "${pids[@]}"
    ;;
  health-64x1 | auth-64x1 | auth-64x1-one)
    local pids=() i body url
    for i in $(seq 0 63); do
      case "$name" in
      auth-64x1) body="$work/auth-$i.bin" url=$AUTH_URL ;;
      auth-64x1-one) body="$work/auth.bin" url=$AUTH_URL ;;
      *) body="$work/health.bin" url=$HEALTH_URL ;;
      esac
      one_h2load "$name" "$url" "$body" 1 1 "$work/$name.log.$i" >"$work/$name.out.$i" &
      pids+=($!)
    done
    wait "${pids[@]}"
    ;;
  esac
  counters >"$work/$name.after"
  sleep 2
}

for name in "${RUNS[@]}"; do
  echo "h2load: $name" >&2
  run "$name"
done
hwm_rss=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status")

python3 - "$work" "$WARMUP" "$DURATION" "${RUNS[@]}" <<'PY'
import glob, re, sys
work, warmup, duration, runs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]

def counters(path):
    out = {}
    for line in open(path):
        m = re.match(r'tokend_(grpc_requests|revocations|db_statements)_total\{(.*)\} (\S+)', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            if m.group(1) == "grpc_requests":
                key = (labels.get("method"), labels.get("code"))
            elif m.group(1) == "db_statements":
                key = ("statements " + labels.get("operation", ""), labels.get("outcome", ""))
            else:
                key = ("revocations " + labels.get("kind", ""), "total")
            out[key] = float(m.group(3))
    return out

print("| run | calls/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | non-200 | server counters (delta, incl. warm-up) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
rates = {}
for name in runs:
    # Only requests started in the measured window count: after the warm-up.
    rows = []
    for path in glob.glob(f"{work}/{name}.log.*"):
        for line in open(path):
            parts = line.split()
            if len(parts) >= 3:
                rows.append((int(parts[0]), int(parts[1]), int(parts[2])))
    if not rows:
        print(f"| {name} | no requests logged | | | | | | | |")
        continue
    first = min(r[0] for r in rows)
    if name.startswith("revoke"):
        # Every URI once, no warm-up: from the first call sent to the last answered.
        window = rows
        span = (max(r[0] + r[2] for r in rows) - first) / 1e6
    else:
        window = [r for r in rows if r[0] >= first + warmup * 1e6]
        span = duration
    lat = sorted(r[2] / 1000.0 for r in window)
    bad = sum(1 for r in window if not 200 <= r[1] < 300)
    def pct(p):
        return lat[min(len(lat) - 1, int(p / 100.0 * len(lat)))]
    rate = len(window) / span
    rates[name] = rate
    before, after = counters(f"{work}/{name}.before"), counters(f"{work}/{name}.after")
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}
    summary = ", ".join(f"{m.rsplit('/', 1)[-1]} {c} +{int(d)}" for (m, c), d in sorted(delta.items()))
    print(f"| {name} | {rate:.0f} | {pct(50):.2f} | {pct(90):.2f} | {pct(99):.2f} | {pct(99.9):.2f} | {lat[-1]:.1f} | {bad} | {summary} |")
print()
for auth, health in (("auth-4x16", "health-4x16"), ("auth-64x1", "health-64x1"), ("auth-64x1-one", "health-64x1"), ("auth-1", "health-1")):
    if auth in rates and health in rates and rates[health]:
        print(f"- {auth} / {health}: {rates[auth] / rates[health]:.2f}")
PY
echo "- server RSS: idle ${idle_rss} kB, peak (VmHWM) after the h2load runs ${hwm_rss} kB"

wait "$harness" || true
echo "--- the tool's own workloads, same server, after h2load:"
sed -n '/^###/,$p' "$work/harness.txt"
