#!/usr/bin/env bash
# Conformance check of a tokend binary as its clients see it: grpcurl 1.8.6
# (reflection v1alpha, health, error details by name), a grpcio client
# (check_details.py: rich error details resolved through reflection) and the
# REST face through the vendors' SDKs (check_rest_sdks.py: datadog-api-client,
# boto3's grafana client).
#
#   bash tests/conformance/run.sh path/to/tokend
#
# Makes (or reuses) a Python venv in target/conformance-venv with the pinned
# packages of requirements.txt, starts tokend on free ports in a temporary
# folder, runs the checks, stops tokend with SIGTERM (it must exit 0) and
# prints `conformance: N checks passed` last. Exits non-zero on any failure.
#
# Environment: PYTHON (default python3) makes the venv;
# TOKEND_CONFORMANCE_STRICT=1 turns the known issues of check_details.py
# into failures.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

if [[ $# -ne 1 ]]; then
    echo "usage: bash tests/conformance/run.sh path/to/tokend" >&2
    exit 2
fi
if [[ ! -f $1 || ! -x $1 ]]; then
    echo "conformance: FAIL: $1 is not an executable tokend binary" >&2
    exit 2
fi
tokend=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")

checks=0
ok() {
    checks=$((checks + 1))
    echo "  ok    $*"
}
fail() {
    echo "conformance: FAIL: $*" >&2
    exit 1
}
# Prints the file $2 indented and fails with message $1.
fail_with() {
    echo "--- output ---" >&2
    sed 's/^/    /' "$2" >&2
    fail "$1"
}

# --- Python venv with the pinned client stack ------------------------------
venv="$repo/target/conformance-venv"
requirements="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "conformance: creating the venv $venv"
    rm -rf "$venv"
    "${PYTHON:-python3}" -m venv "$venv" || fail "cannot create a venv with ${PYTHON:-python3} (install python3-venv?)"
fi
wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$wanted" ]]; then
    echo "conformance: installing $requirements into the venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" \
        || fail "pip install -r $requirements failed"
    echo "$wanted" >"$stamp"
fi
python="$venv/bin/python"
grpcurl="$venv/bin/grpcurl"
"$grpcurl" -version 2>&1 | grep -q 'v1\.8\.6' || fail "the venv's grpcurl is not v1.8.6"

# --- Start tokend ----------------------------------------------------------
workdir=$(mktemp -d "${TMPDIR:-/tmp}/tokend-conformance.XXXXXX")
log="$workdir/tokend.log"
tokend_pid=""

stop_tokend() {
    # SIGTERM, then up to 10 s for a graceful exit, then SIGKILL.
    local pid=$1 deadline=$((SECONDS + 10))
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT
    if [[ -n $tokend_pid ]] && kill -0 "$tokend_pid" 2>/dev/null; then
        stop_tokend "$tokend_pid"
        wait "$tokend_pid" 2>/dev/null || true
    fi
    if [[ $rc -ne 0 && -s $log ]]; then
        mkdir -p "$repo/target"
        cp "$log" "$repo/target/conformance-tokend.log" 2>/dev/null || true
        echo "--- last lines of tokend's log (whole log: target/conformance-tokend.log) ---" >&2
        tail -n 30 "$log" >&2
    fi
    rm -rf "$workdir"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$tokend" serve \
    --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
    --data-dir "$workdir/data" --log-format json --shutdown-grace 5s \
    >"$workdir/tokend.stdout" 2>"$log" &
tokend_pid=$!

# The "tokend listening" log line names the ports it got.
grpc_addr=""
deadline=$((SECONDS + 20))
while [[ -z $grpc_addr ]]; do
    kill -0 "$tokend_pid" 2>/dev/null || fail "tokend exited during start-up"
    ((SECONDS < deadline)) || fail "no 'tokend listening' log line within 20 s"
    line=$(grep -m1 '"message":"tokend listening"' "$log" || true)
    if [[ -n $line ]]; then
        grpc_addr=$(sed -n 's/.*"grpc_addr":"\([^"]*\)".*/\1/p' <<<"$line")
        http_addr=$(sed -n 's/.*"http_addr":"\([^"]*\)".*/\1/p' <<<"$line")
        [[ -n $grpc_addr && -n $http_addr ]] || fail "cannot parse the addresses from: $line"
    else
        sleep 0.05
    fi
done
echo "conformance: tokend (pid $tokend_pid) on grpc $grpc_addr, http $http_addr"

# grpcurl with bounded time; extra arguments go before the address.
gc() {
    "$grpcurl" -plaintext -connect-timeout 5 -max-time 10 "$@"
}
health_of() {
    gc -d "{\"service\":\"$1\"}" "$grpc_addr" grpc.health.v1.Health/Check 2>&1
}

# Readiness: tokend.v1.TokenService is SERVING once migrations are applied.
deadline=$((SECONDS + 20))
until health_of tokend.v1.TokenService | grep -q '"status": "SERVING"'; do
    kill -0 "$tokend_pid" 2>/dev/null || fail "tokend exited before becoming ready"
    ((SECONDS < deadline)) || fail "tokend.v1.TokenService not SERVING within 20 s"
    sleep 0.1
done

# --- grpcurl 1.8.6 ---------------------------------------------------------
out="$workdir/grpcurl.out"

gc "$grpc_addr" list >"$out" 2>&1 || fail_with "grpcurl list failed" "$out"
for service in tokend.v1.TokenService grpc.health.v1.Health; do
    grep -qx "$service" "$out" || fail_with "grpcurl list does not show $service" "$out"
done
grep -Eqx 'grpc\.reflection\.v1(alpha)?\.ServerReflection' "$out" \
    || fail_with "grpcurl list does not show the reflection service" "$out"
ok "grpcurl list: $(paste -sd' ' "$out")"

gc "$grpc_addr" describe tokend.v1.Problem >"$out" 2>&1 || fail_with "grpcurl describe tokend.v1.Problem failed" "$out"
for expected in 'message Problem {' 'string type = 1;' 'int32 status = 3;' 'string request_id = 6;' \
    'repeated .tokend.v1.FieldError errors = 7;' 'string error = 8 [deprecated = true];'; do
    grep -qF "$expected" "$out" || fail_with "describe tokend.v1.Problem lacks '$expected'" "$out"
done
ok "grpcurl describe tokend.v1.Problem"

gc "$grpc_addr" describe google.rpc.ErrorInfo >"$out" 2>&1 || fail_with "grpcurl describe google.rpc.ErrorInfo failed" "$out"
for expected in 'message ErrorInfo {' 'string reason = 1;' 'string domain = 2;' 'map<string, string> metadata = 3;'; do
    grep -qF "$expected" "$out" || fail_with "describe google.rpc.ErrorInfo lacks '$expected'" "$out"
done
ok "grpcurl describe google.rpc.ErrorInfo"

for service in "" tokend.v1.TokenService; do
    health_of "$service" >"$out" || fail_with "health check of '$service' failed" "$out"
    grep -q '"status": "SERVING"' "$out" || fail_with "health of '$service' is not SERVING" "$out"
    ok "grpcurl health '$service': SERVING (no JWT)"
done

jwt=$("$tokend" mint-jwt --data-dir "$workdir/data" --org conformance-sh --sub conformance-admin --role admin) \
    || fail "tokend mint-jwt failed"

rid="conformance-sh-create-$$"
gc -v -H "authorization: Bearer $jwt" -H "x-request-id: $rid" \
    -d '{"kind":"TOKEN_KIND_SERVICE_ACCOUNT","name":"deploy","service_account_slug":"ci"}' \
    "$grpc_addr" tokend.v1.TokenService/CreateToken >"$out" 2>&1 \
    || fail_with "CreateToken failed" "$out"
grep -q '"secret": "tkd_sat_' "$out" || fail_with "CreateToken returned no tkd_sat_ secret" "$out"
grep -q '"orgId": "conformance-sh"' "$out" || fail_with "CreateToken returned the wrong org" "$out"
grep -qix "x-request-id: $rid" "$out" || fail_with "CreateToken did not echo x-request-id" "$out"
ok "grpcurl CreateToken: OK, tkd_sat_ secret, x-request-id echoed"

rid="conformance-sh-invalid-$$"
rc=0
gc -v -format-error -H "authorization: Bearer $jwt" -H "x-request-id: $rid" \
    -d '{"kind":"TOKEN_KIND_SERVICE_ACCOUNT","name":"Bad Slug"}' \
    "$grpc_addr" tokend.v1.TokenService/CreateToken >"$out" 2>&1 || rc=$?
# grpcurl exits 64 + the gRPC code: 67 for INVALID_ARGUMENT.
[[ $rc -eq 67 ]] || fail_with "a bad CreateToken made grpcurl exit $rc, expected 67 (INVALID_ARGUMENT)" "$out"
grep -q '"code": 3,' "$out" || fail_with "-format-error shows no code 3" "$out"
# One line per detail, decoded by its type name (an undecodable Any would
# show no fields).
detail_line() { grep -F "\"@type\":\"type.googleapis.com/$1\"" "$out" || true; }
problem=$(detail_line tokend.v1.Problem)
[[ -n $problem ]] || fail_with "no type.googleapis.com/tokend.v1.Problem detail" "$out"
for expected in '"status":400' '"title":"Invalid field"' "\"requestId\":\"$rid\"" '"location":"name"' '"value":"Bad Slug"'; do
    grep -qF "$expected" <<<"$problem" || fail_with "the Problem detail lacks $expected" "$out"
done
error_info=$(detail_line google.rpc.ErrorInfo)
grep -qF '"reason":"INVALID_FIELD"' <<<"$error_info" || fail_with "no google.rpc.ErrorInfo with reason INVALID_FIELD" "$out"
grep -qF '"domain":"tokend"' <<<"$error_info" || fail_with "ErrorInfo domain is not tokend" "$out"
bad_request=$(detail_line google.rpc.BadRequest)
grep -qF '"fieldViolations":[{"field":"name"' <<<"$bad_request" || fail_with "no google.rpc.BadRequest with a name violation" "$out"
grep -qF "\"requestId\":\"$rid\"" <<<"$(detail_line google.rpc.RequestInfo)" || fail_with "no google.rpc.RequestInfo with the request id" "$out"
grep -qix "x-request-id: $rid" "$out" || fail_with "the failing call did not echo x-request-id" "$out"
ok "grpcurl -format-error: Problem, ErrorInfo INVALID_FIELD, BadRequest, RequestInfo decoded by name"

# --- grpcio client ---------------------------------------------------------
py_out="$workdir/python.out"
echo "conformance: check_details.py"
rc=0
"$python" "$here/check_details.py" --addr "$grpc_addr" --tokend "$tokend" --data-dir "$workdir/data" >"$py_out" 2>&1 || rc=$?
cat "$py_out"
[[ $rc -eq 0 ]] || fail "check_details.py failed (exit $rc)"
summary=$(tail -n 1 "$py_out")
py_checks=$(sed -n 's/^check_details: \([0-9][0-9]*\) checks passed.*/\1/p' <<<"$summary")
[[ -n $py_checks ]] || fail "check_details.py printed no summary"
known=$(sed -n 's/.*, \([0-9][0-9]*\) known issue(s) tolerated$/\1/p' <<<"$summary")
checks=$((checks + py_checks))

# --- The REST face through the vendors' SDKs --------------------------------
sdk_out="$workdir/rest-sdks.out"
echo "conformance: check_rest_sdks.py (datadog-api-client, boto3 grafana)"
rc=0
"$python" "$here/check_rest_sdks.py" --http-addr "$http_addr" --tokend "$tokend" --data-dir "$workdir/data" >"$sdk_out" 2>&1 || rc=$?
cat "$sdk_out"
[[ $rc -eq 0 ]] || fail "check_rest_sdks.py failed (exit $rc)"
sdk_checks=$(sed -n 's/^check_rest_sdks: \([0-9][0-9]*\) checks passed$/\1/p' <<<"$(tail -n 1 "$sdk_out")")
[[ -n $sdk_checks ]] || fail "check_rest_sdks.py printed no summary"
checks=$((checks + sdk_checks))

# --- Graceful stop ---------------------------------------------------------
pid=$tokend_pid
deadline=$((SECONDS + 15))
kill -TERM "$pid"
while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.05
done
kill -0 "$pid" 2>/dev/null && fail "tokend still running 15 s after SIGTERM"
rc=0
wait "$pid" || rc=$?
tokend_pid=""
[[ $rc -eq 0 ]] || fail "tokend exited $rc after SIGTERM, expected 0"
ok "SIGTERM: tokend exited 0"

if [[ -n $known ]]; then
    echo "conformance: $known known issue(s) reported above (TOKEND_CONFORMANCE_STRICT=1 makes them fail)"
fi
echo "conformance: $checks checks passed"
