#!/usr/bin/env bash
# Render deploy/k8s (base and production overlay) with `kubectl kustomize`
# and validate every object against the Kubernetes OpenAPI schemas with
# kubernetes-validate, in strict mode (unknown fields are errors), plus a few
# cross-object consistency checks that a schema cannot express.
#
#   bash .ci/deploy-check.sh
#
# Needs kubectl (for its built-in kustomize) and python3 with venv; installs
# kubernetes-validate from PyPI into a venv under target/deploy-check/ (reused
# on the next run). Exits non-zero on any render error, schema error or
# failed consistency check.
#
# The monitoring pieces are checked with promtool (Debian's `prometheus`
# package, installed here when missing; its service is never started): the
# PrometheusRule's groups with `promtool check rules` and the unit tests in
# deploy/prometheus/, the Grafana dashboard's queries as recording rules.
#
# Env overrides: KUBERNETES_VALIDATE_VERSION (pinned below), MIN_K8S_VERSION
# (oldest Kubernetes the manifests promise to run on), DEPLOY_CHECK_DIR.
set -euo pipefail

KV_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
# 1.30: oldest release with the preStop `sleep` action on by default (beta in
# 1.30, GA in 1.34); gRPC probes and appProtocol kubernetes.io/h2c are older.
MIN_K8S="${MIN_K8S_VERSION:-1.30}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="${DEPLOY_CHECK_DIR:-$ROOT/target/deploy-check}"
VENV="$WORK/venv"
RENDERED="$WORK/rendered"

die() { echo "deploy-check: FAIL: $*" >&2; exit 1; }

command -v kubectl >/dev/null || die "kubectl not found (its built-in kustomize renders the manifests)"
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found"

mkdir -p "$WORK"
rm -rf "$RENDERED"
mkdir -p "$RENDERED"

# --- venv with the pinned kubernetes-validate (reused when already right) ---
have_kv() {
  "$VENV/bin/python" - "$KV_VERSION" >/dev/null 2>&1 <<'PY'
import importlib.metadata, sys
sys.exit(importlib.metadata.version("kubernetes-validate") != sys.argv[1])
PY
}
if ! have_kv; then
  echo "deploy-check: installing kubernetes-validate==$KV_VERSION into $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
  have_kv || die "kubernetes-validate==$KV_VERSION did not install"
fi

# --- promtool (Debian's `prometheus` package) ------------------------------------
# Only promtool is wanted. The package also ships the server's service: a
# policy-rc.d that answers 101 ("action forbidden") keeps the maintainer
# scripts from starting it (Debian container images already have one), and
# on a machine running systemd the unit is disabled again afterwards.
install_promtool() {
  command -v apt-get >/dev/null || die "promtool not found, and no apt-get to install Debian's prometheus package"
  local sudo=() added_policy=""
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "deploy-check: promtool not found: installing Debian's prometheus package (the service is not started)"
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod 0755 /usr/sbin/policy-rc.d
    added_policy=1
  fi
  local status=0
  "${sudo[@]}" apt-get update -qq || status=$?
  if [ "$status" -eq 0 ]; then
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends prometheus >/dev/null || status=$?
  fi
  if [ -n "$added_policy" ]; then "${sudo[@]}" rm -f /usr/sbin/policy-rc.d; fi
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    "${sudo[@]}" systemctl disable prometheus.service >/dev/null 2>&1 || true
  fi
  [ "$status" -eq 0 ] || die "apt-get could not install prometheus (exit $status)"
  command -v promtool >/dev/null || die "the prometheus package installed no promtool"
}
command -v promtool >/dev/null || install_promtool
echo "deploy-check: $(promtool --version 2>&1 | head -n 1)"

# --- render --------------------------------------------------------------------
kustomize_version="$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p')"
echo "deploy-check: kubectl kustomize ${kustomize_version:-(version unknown)}"
render() { # name dir
  if ! kubectl kustomize "$2" >"$RENDERED/$1.yaml" 2>"$RENDERED/$1.err"; then
    cat "$RENDERED/$1.err" >&2
    die "kubectl kustomize $2 failed"
  fi
  echo "deploy-check: rendered $2 -> ${RENDERED#"$ROOT"/}/$1.yaml"
}
render base deploy/k8s/base
render production deploy/k8s/overlays/production

# --- monitoring: alert rules and dashboard queries through promtool --------------
# The PrometheusRule's `spec` is a Prometheus rule file; it is taken from the
# rendered manifests (what would be applied), checked, and unit-tested. The
# dashboard's queries become recording rules (Grafana's variables replaced by
# plain values) so that promtool parses every one of them.
MON="$WORK/prometheus"
rm -rf "$MON"
mkdir -p "$MON"
"$VENV/bin/python" - "$RENDERED" "$MON" deploy/grafana/tokend.json <<'PY'
import json
import re
import sys

import yaml

rendered, out, dashboard_path = sys.argv[1:]


def die(msg):
    sys.exit(f"deploy-check: FAIL: {msg}")


for label in ("base", "production"):
    with open(f"{rendered}/{label}.yaml") as f:
        rules = [o for o in yaml.safe_load_all(f)
                 if o and o.get("kind") == "PrometheusRule"
                 and o.get("apiVersion") == "monitoring.coreos.com/v1"]
    if len(rules) != 1:
        die(f"{label}: expected one PrometheusRule (monitoring.coreos.com/v1), found {len(rules)}")
    name = "tokend-rules.yaml" if label == "base" else f"tokend-rules.{label}.yaml"
    with open(f"{out}/{name}", "w") as f:
        yaml.safe_dump(rules[0]["spec"], f, sort_keys=False)
    print(f"deploy-check: {label}: PrometheusRule/{rules[0]['metadata']['name']} spec -> {name}")

# The dashboard: JSON, a `datasource` variable of type datasource for
# Prometheus, every panel with queries reads `${datasource}`, every query has
# an expression, ids unique.
try:
    with open(dashboard_path) as f:
        dash = json.load(f)
except (OSError, json.JSONDecodeError) as e:
    die(f"{dashboard_path}: {e}")
variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
ds = variables.get("datasource", {})
if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
    die(f"{dashboard_path}: needs a template variable `datasource` of type datasource, query prometheus")
for name, v in variables.items():
    if name != "datasource" and v.get("datasource", {}).get("uid") != "${datasource}":
        die(f"{dashboard_path}: variable {name} must query ${{datasource}}")


def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


seen_ids, records = set(), []
for p in panels(dash.get("panels", [])):
    if p.get("id") in seen_ids:
        die(f"{dashboard_path}: panel id {p.get('id')} used twice")
    seen_ids.add(p.get("id"))
    if p.get("type") == "row":
        continue
    targets = p.get("targets", [])
    if not targets:
        die(f"{dashboard_path}: panel {p.get('title')!r} has no query")
    if p.get("datasource", {}).get("uid") != "${datasource}":
        die(f"{dashboard_path}: panel {p.get('title')!r} does not read ${{datasource}}")
    for t in targets:
        expr = t.get("expr", "")
        if not expr or t.get("datasource", {}).get("uid", "${datasource}") != "${datasource}":
            die(f"{dashboard_path}: panel {p.get('title')!r} query {t.get('refId')} has no expression or another datasource")
        plain = expr
        for var, value in (("$__rate_interval", "5m"), ("$__interval", "1m"), ("$__range", "1h")):
            plain = plain.replace(var, value)
        plain = re.sub(r"\$\{?(namespace|pod)\}?", ".*", plain)
        if "$" in plain:
            die(f"{dashboard_path}: panel {p.get('title')!r} uses an unknown variable: {expr}")
        records.append({"record": f"dashboard:panel{p['id']}:{t.get('refId', 'A').lower()}", "expr": plain})
with open(f"{out}/dashboard-queries.yaml", "w") as f:
    yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": records}]}, f, sort_keys=False)
print(f"deploy-check: {dashboard_path}: {len(seen_ids)} panels, {len(records)} queries -> dashboard-queries.yaml")
PY
cp deploy/prometheus/prometheusrule.test.yaml "$MON/"
(
  cd "$MON" &&
    promtool check rules tokend-rules.yaml tokend-rules.production.yaml dashboard-queries.yaml &&
    promtool test rules prometheusrule.test.yaml
) || die "promtool rejected the alert rules, a dashboard query, or a rule unit test"

# --- validate --------------------------------------------------------------------
# Arguments: MIN_K8S, then label=file pairs. Rendered sets get the consistency
# checks too; the example Secrets (kept out of kustomize on purpose) are only
# schema-validated.
REL="${RENDERED#"$ROOT"/}" # shorter paths in the output (we are in $ROOT)
exec "$VENV/bin/python" - "$MIN_K8S" \
  "base=$REL/base.yaml" \
  "production=$REL/production.yaml" \
  "example=deploy/k8s/base/secret.example.yaml" \
  "example=deploy/k8s/overlays/production/secrets.example.yaml" <<'PY'
import copy
import importlib.metadata
import re
import sys

import kubernetes_validate.utils as kv
from packaging.version import Version

# Custom resources have no schema in kubernetes-validate. These (and only
# these) are skipped by the schema check, loudly; any other kind without a
# schema (a typo in `kind` or `apiVersion`) is an error. ServiceMonitor is
# cross-checked against the Service below instead; PrometheusRule's shape is
# checked below and its rules by promtool (above).
CRD_KINDS = {("monitoring.coreos.com", "ServiceMonitor"), ("monitoring.coreos.com", "PrometheusRule")}
STRICT = True

min_version, pairs = sys.argv[1], sys.argv[2:]
newest = kv.latest_version()  # newest Kubernetes this kubernetes-validate knows
if Version(newest) < Version("1.30"):
    sys.exit(f"deploy-check: FAIL: kubernetes-validate only knows Kubernetes <= {newest}")
versions = [kv.major_minor(v) for v in sorted({min_version, newest}, key=Version)]

print(
    f"deploy-check: kubernetes-validate {importlib.metadata.version('kubernetes-validate')}, "
    f"strict={STRICT}, Kubernetes {' and '.join(versions)} "
    f"(newest it knows: {kv.major_minor(newest)})"
)

errors = []
counts = {"validated": 0, "skipped": 0}


def fail(msg):
    errors.append(msg)
    print(f"  FAIL  {msg}")


def group_of(api_version):
    return api_version.split("/")[0] if "/" in api_version else ""


def name_of(obj):
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def schema_check(obj, version):
    """Returns None when valid, else an error string."""
    try:
        kv.validate(obj, version, STRICT)
        return None
    except kv.ValidationError as e:
        path = ".".join(str(p) for p in e.path) or "(root)"
        return f"{path}: {e.message}"
    except kv.SchemaNotFoundError as e:
        return e.message
    except kv.VersionNotSupportedError as e:
        return e.message


# Canary: a validator that accepts everything would make this whole check a
# no-op; prove it rejects two known-bad objects first.
canary = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "canary"},
    "spec": {
        "selector": {"matchLabels": {"a": "b"}},
        "template": {
            "metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        },
    },
}
bad_type = copy.deepcopy(canary)
bad_type["spec"]["replicas"] = "two"
bad_field = copy.deepcopy(canary)
bad_field["spec"]["template"]["spec"]["containers"][0]["imagePolicy"] = "x"
for v in versions:
    if schema_check(canary, v) is not None or not schema_check(bad_type, v) or not schema_check(bad_field, v):
        sys.exit(f"deploy-check: FAIL: validator self-test failed for Kubernetes {v}")


def load(path):
    try:
        return kv.resources_from_file(path)
    except SystemExit as e:  # kubernetes-validate reports unreadable YAML this way
        fail(str(e))
        return []


# ---------------------------------------------------------------- consistency
def sel_matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def seconds(duration):
    m = re.fullmatch(r"(\d+)(ms|s|m)", duration or "")
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2)
    return {"ms": n / 1000, "s": n, "m": n * 60}[unit]


def consistency(label, objs):
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    checks = []

    def check(ok, what):
        checks.append(what)
        if not ok:
            fail(f"{label}: {what}")

    deps = by_kind.get("Deployment", [])
    check(len(deps) == 1, "exactly one Deployment")
    if not deps:
        return 0
    dep = deps[0]
    pod = dep["spec"]["template"]
    pod_labels = pod["metadata"].get("labels", {})
    spec = pod["spec"]
    main = next((c for c in spec["containers"] if c["name"] == "tokend"), None)
    check(main is not None, "container `tokend` exists")
    if main is None:
        return len(checks)
    ports = {p["name"]: p["containerPort"] for p in main.get("ports", [])}
    check(ports == {"grpc": 50051, "metrics": 9464}, "container ports grpc=50051, metrics=9464")
    check(sel_matches(dep["spec"]["selector"]["matchLabels"], pod_labels), "Deployment selector matches its pod labels")
    check("replicas" not in dep["spec"], "Deployment has no replicas (the HPA owns the count)")
    check(dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, "rollout maxUnavailable 0")

    # probes: native gRPC, on the gRPC port, right services
    probe_svc = {"startupProbe": "", "readinessProbe": "tokend.v1.TokenService", "livenessProbe": ""}
    for probe, svc in probe_svc.items():
        g = main.get(probe, {}).get("grpc", {})
        check(g.get("port") == ports.get("grpc") and g.get("service", "") == svc,
              f"{probe} is gRPC health on port {ports.get('grpc')} service {svc!r}")

    # shutdown arithmetic: preStop sleep + shutdown grace + margin <= grace period
    env = {e["name"]: e for e in main.get("env", [])}
    grace = seconds(env.get("TOKEND_SHUTDOWN_GRACE", {}).get("value", "20s"))
    pre = main.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
    tgps = spec.get("terminationGracePeriodSeconds", 30)
    check(pre is not None, "preStop uses the native sleep action (no shell in the image)")
    if pre is not None and grace is not None:
        check(tgps >= pre + grace + 1,
              f"terminationGracePeriodSeconds {tgps} >= preStop {pre}s + shutdown grace {grace:g}s + margin ({tgps - pre - grace:g}s)")

    # migrate initContainer: same image, same environment
    init = next((c for c in spec.get("initContainers", []) if c["name"] == "migrate"), None)
    check(init is not None and init.get("args") == ["migrate"], "initContainer `migrate` runs `tokend migrate`")
    if init is not None:
        check(init["image"] == main["image"], "initContainer uses the server's image")
        check(init.get("env") == main.get("env") and init.get("envFrom") == main.get("envFrom"),
              "initContainer has the same env/envFrom as the server")
        check(init.get("volumeMounts") == main.get("volumeMounts"), "initContainer has the same volume mounts")

    # hardening on every container
    for c in spec.get("initContainers", []) + spec["containers"]:
        sc = c.get("securityContext", {})
        check(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
              and sc.get("runAsNonRoot") is True and sc.get("capabilities", {}).get("drop") == ["ALL"],
              f"container {c['name']}: read-only root, no privilege escalation, non-root, drop ALL")
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        check("/var/lib/tokend" in mounts and env.get("TOKEND_DATA_DIR", {}).get("value") == "/var/lib/tokend",
              f"container {c['name']}: TOKEND_DATA_DIR /var/lib/tokend is a mounted volume")

    # referenced ConfigMaps are in the render (names carry kustomize's hash)
    cms = {o["metadata"]["name"] for o in by_kind.get("ConfigMap", [])}
    for ref in main.get("envFrom", []):
        if "configMapRef" in ref:
            check(ref["configMapRef"]["name"] in cms, f"envFrom ConfigMap {ref['configMapRef']['name']} is rendered")

    # Service / PDB / NetworkPolicy / HPA / spread constraints select these pods
    svcs = by_kind.get("Service", [])
    check(len(svcs) == 1, "exactly one Service")
    for svc in svcs:
        check(sel_matches(svc["spec"].get("selector", {}), pod_labels), f"Service {svc['metadata']['name']} selects the pods")
        sp = {p["name"]: p for p in svc["spec"]["ports"]}
        check(sp.get("grpc", {}).get("appProtocol") == "kubernetes.io/h2c", "Service port grpc has appProtocol kubernetes.io/h2c")
        check(all(p.get("targetPort") in ports for p in sp.values()), "Service targetPorts are named container ports")
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for o in by_kind.get(kind, []):
            key = "selector" if kind == "PodDisruptionBudget" else "podSelector"
            check(sel_matches(o["spec"][key].get("matchLabels", {}), pod_labels), f"{kind} {o['metadata']['name']} selects the pods")
    for t in spec.get("topologySpreadConstraints", []):
        check(sel_matches(t["labelSelector"]["matchLabels"], pod_labels), f"topologySpreadConstraint {t['topologyKey']} selects the pods")
    for h in by_kind.get("HorizontalPodAutoscaler", []):
        ref = h["spec"]["scaleTargetRef"]
        check(ref["kind"] == "Deployment" and ref["name"] == dep["metadata"]["name"], "HPA scales the Deployment")
    check(len(by_kind.get("HorizontalPodAutoscaler", [])) == 1, "one HorizontalPodAutoscaler")
    check(len(by_kind.get("PodDisruptionBudget", [])) == 1, "one PodDisruptionBudget")
    check(len(by_kind.get("NetworkPolicy", [])) == 1, "one NetworkPolicy")

    # ServiceMonitor (no schema): finds the Service, its metrics port, the path
    sms = by_kind.get("ServiceMonitor", [])
    check(len(sms) == 1, "one ServiceMonitor")
    for sm in sms:
        picked = [s for s in svcs if sel_matches(sm["spec"]["selector"].get("matchLabels", {}), s["metadata"].get("labels", {}))]
        check(len(picked) == 1, "ServiceMonitor selects exactly the tokend Service")
        for ep in sm["spec"].get("endpoints", []):
            check(any(ep.get("port") in {p["name"] for p in s["spec"]["ports"]} for s in picked),
                  f"ServiceMonitor endpoint port {ep.get('port')!r} is a Service port")
            check(ep.get("path") == "/metrics", "ServiceMonitor scrapes the operator figures at /metrics")
            # /metrics needs no credentials; a tenant's scrape token sent
            # there would only spread a secret.
            check(not ({"authorization", "bearerTokenSecret", "bearerTokenFile", "basicAuth"} & ep.keys()),
                  "ServiceMonitor sends no credentials")

    # PrometheusRule (no schema): its shape, the alerts the runbooks promise,
    # and every runbook link lands on a heading of deploy/README.md.
    prs = by_kind.get("PrometheusRule", [])
    check(len(prs) == 1, "one PrometheusRule")
    for pr in prs:
        check(set(pr.keys()) == {"apiVersion", "kind", "metadata", "spec"} and set(pr["spec"].keys()) == {"groups"},
              "PrometheusRule has only metadata and spec.groups")
        groups = pr["spec"].get("groups") or []
        check(isinstance(groups, list) and len(groups) > 0, "PrometheusRule has rule groups")
        names = [g.get("name") for g in groups]
        check(all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names), "rule groups have unique names")
        alerts = {}
        for g in groups:
            check(set(g.keys()) <= {"name", "interval", "rules"}, f"group {g.get('name')}: only name, interval, rules")
            rules = g.get("rules") or []
            check(len(rules) > 0, f"group {g.get('name')} has rules")
            for r in rules:
                what = r.get("alert") or r.get("record")
                check(("alert" in r) != ("record" in r), f"rule {what}: exactly one of alert / record")
                check(isinstance(r.get("expr"), str) and r["expr"].strip() != "", f"rule {what}: has an expression")
                if "alert" not in r:
                    continue
                alerts[r["alert"]] = r
                check(set(r.keys()) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"},
                      f"alert {what}: no unknown field")
                check(seconds(r.get("for")) is not None and seconds(r.get("for")) > 0, f"alert {what}: has a `for` duration")
                check(r.get("labels", {}).get("severity") in {"critical", "warning"}, f"alert {what}: severity critical or warning")
                ann = r.get("annotations", {})
                check(all(isinstance(ann.get(k), str) and ann[k] for k in ("summary", "description", "runbook_url")),
                      f"alert {what}: summary, description and runbook_url annotations")
                m = re.fullmatch(r"https://[^#\s]+/deploy/README\.md#([a-z0-9_-]+)", ann.get("runbook_url", ""))
                check(m is not None and m.group(1) in RUNBOOK_ANCHORS,
                      f"alert {what}: runbook_url names a heading of deploy/README.md")
        check(set(REQUIRED_ALERTS) <= alerts.keys(), f"alerts {', '.join(sorted(REQUIRED_ALERTS))} are defined")
    return len(checks)


# Headings of deploy/README.md, as GitHub anchors them (lower case,
# punctuation but - and _ dropped, spaces to -), outside code fences.
def markdown_anchors(path):
    out, in_fence = set(), False
    with open(path) as f:
        for line in f:
            if line.startswith("```"):
                in_fence = not in_fence
            m = None if in_fence else re.match(r"#{1,6} (.+)$", line.rstrip("\n"))
            if m:
                out.add("".join("-" if c == " " else c for c in m.group(1).strip().lower()
                                if c == " " or c.isalnum() or c in "-_"))
    return out


RUNBOOK_ANCHORS = markdown_anchors("deploy/README.md")
# The alerts deploy/README.md documents; dropping one must be deliberate.
REQUIRED_ALERTS = ("TokendHighErrorRatio", "TokendHighLatencyP99", "TokendTargetDown", "TokendDown",
                   "TokendPodsNotReady", "TokendDatabaseUnavailable", "TokendRateLimitRefusals")


# --------------------------------------------------------------------- main
for pair in pairs:
    label, path = pair.split("=", 1)
    objs = load(path)
    print(f"{label}: {path} ({len(objs)} objects)")
    for obj in objs:
        ident = f"{obj.get('apiVersion')} {name_of(obj)}"
        if (group_of(obj.get("apiVersion", "")), obj.get("kind")) in CRD_KINDS:
            counts["skipped"] += 1
            print(f"  skip  {ident}  (custom resource: no schema; cross-checked below)")
            continue
        problems = [(v, schema_check(obj, v)) for v in versions]
        bad = [f"k8s {v}: {p}" for v, p in problems if p]
        if bad:
            for b in bad:
                fail(f"{label} {ident}: {b}")
        else:
            counts["validated"] += 1
            print(f"  ok    {ident}")
    if label != "example":
        n = consistency(label, objs)
        failed = sum(1 for e in errors if e.startswith(f"{label}: "))
        print(f"  {'ok  ' if not failed else 'FAIL'}  {n} consistency checks" + (f", {failed} failed" if failed else ""))

summary = (f"{counts['validated']} objects valid against Kubernetes {' and '.join(versions)} (strict), "
           f"{counts['skipped']} custom resources skipped, {len(errors)} errors")
if errors:
    print(f"deploy-check: FAIL: {summary}")
    sys.exit(1)
print(f"deploy-check: OK: {summary}")
PY
