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
# cross-checked against the Service below instead.
CRD_KINDS = {("monitoring.coreos.com", "ServiceMonitor")}
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
    return len(checks)


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
