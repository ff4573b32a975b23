"""The Kubernetes manifests of examples/kubernetes/, rendered offline.

scripts/kustomize (a small Go program on the kustomize API library, pinned
in its go.mod) is built once and renders the base and every overlay, as
`kubectl kustomize` would; the YAML is parsed and checked for what the
sidecar layout needs (docs/kubernetes.md): probes on the admin port, the
admin token from a Secret, a grace period that covers the shutdown delay
and the graceful timeout, one emptyDir shared by both containers where the
pool's socket is, an HPA on a metric the gateway really exports. The
ConfigMap's sluice.ini goes through `sluice --check-config`. Skipped
without a Go new enough for scripts/kustomize/go.mod.
"""

import configparser
import glob
import os
import re
import subprocess

import pytest

yaml = pytest.importorskip("yaml")

from conftest import ROOT, SLUICE
from goutil import find_go

K8S = os.path.join(ROOT, "examples", "kubernetes")
BASE = os.path.join(K8S, "base")
OVERLAYS = sorted(glob.glob(os.path.join(K8S, "overlays", "*")))
TOOL = os.path.join(ROOT, "scripts", "kustomize")
ADMIN_C = os.path.join(ROOT, "server", "admin", "admin.c")


GO, SKIP = find_go(os.path.join(TOOL, "go.mod"),
                   "scripts/kustomize cannot be built to render examples/kubernetes")
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


@pytest.fixture(scope="module")
def kustomize(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("kustomize") / "kustomize")
    env = dict(os.environ, GOFLAGS="-mod=readonly -buildvcs=false", GOTOOLCHAIN="local")
    r = subprocess.run([GO, "build", "-o", out, "."], cwd=TOOL, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=900)
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace")
        if re.search(r"dial tcp|lookup .*: |proxy\.golang\.org|i/o timeout", err):
            pytest.skip("scripts/kustomize: its modules are not in the module cache and "
                        f"cannot be downloaded:\n{err[-1000:]}")
        pytest.fail(f"go build of scripts/kustomize failed (exit {r.returncode}):\n{err[-4000:]}",
                    pytrace=False)
    return out


def render(kustomize, path):
    r = subprocess.run([kustomize, path], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def one(docs, kind):
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


def duration_s(text):
    """A sluice duration (a bare number is seconds; ms, s, m, h) in seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text)
    assert m, f"not a duration: {text!r}"
    return float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


def flag(args, name):
    """The value of `--name VALUE` or `--name=VALUE` in a container's args."""
    for i, a in enumerate(args):
        if a == name:
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def ini_of(docs):
    cm = one(docs, "ConfigMap")
    cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=None,
                                   comment_prefixes=("#", ";"))
    cp.read_string(cm["data"]["sluice.ini"])
    return cm, cp


def containers(dep):
    cs = {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}
    assert set(cs) == {"gateway", "worker"}
    return cs["gateway"], cs["worker"]


def port_number(container, port):
    if isinstance(port, int):
        return port
    (p,) = [p for p in container["ports"] if p["name"] == port]
    return p["containerPort"]


TARGETS = [BASE] + OVERLAYS
IDS = ["base"] + [os.path.basename(o) for o in OVERLAYS]


@pytest.mark.parametrize("path", TARGETS, ids=IDS)
def test_kinds_and_wiring(kustomize, path):
    docs = render(kustomize, path)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["ConfigMap", "Deployment", "HorizontalPodAutoscaler",
                            "PodDisruptionBudget", "Service"])
    dep = one(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    gw, worker = containers(dep)
    cm, ini = ini_of(docs)

    # probes: /healthz and /readyz on the admin listener's port
    admin_port = int(ini["server"]["admin"].rsplit(":", 1)[1])
    assert gw["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gw["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert port_number(gw, gw[probe]["httpGet"]["port"]) == admin_port

    # the admin token comes from a Secret, never from the ConfigMap
    (tok,) = [e for e in gw["env"] if e["name"] == "SLUICE_ADMIN_TOKEN"]
    ref = tok["valueFrom"]["secretKeyRef"]
    assert ref["name"] and ref["key"] and "value" not in tok
    assert "admin_token" not in ini["server"]
    assert not any(d["kind"] == "Secret" for d in docs)

    # the config file mounted where the args say, from the generated ConfigMap
    conf = flag(gw["args"], "--config")
    (cvol,) = [v for v in pod["volumes"] if "configMap" in v]
    assert cvol["configMap"]["name"] == cm["metadata"]["name"]
    (cmount,) = [m for m in gw["volumeMounts"] if m["name"] == cvol["name"]]
    assert conf == cmount["mountPath"].rstrip("/") + "/sluice.ini"

    # SIGTERM: readiness fails for the shutdown delay, then the drain; the
    # kubelet's SIGKILL comes later than both
    delay = duration_s(flag(gw["args"], "--shutdown-delay"))
    graceful = duration_s(flag(gw["args"], "--graceful-timeout") or
                          ini["server"].get("graceful_timeout", "30s"))
    assert delay > 0
    assert pod["terminationGracePeriodSeconds"] > delay + graceful
    assert "lifecycle" not in gw  # --shutdown-delay instead of a preStop
    # the worker's SIGTERM is held back while the gateway still serves
    sleep = worker["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and float(sleep[1]) >= delay
    assert float(sleep[1]) < pod["terminationGracePeriodSeconds"]

    # one emptyDir, mounted by both containers at the pool's socket_dir
    (pool_section,) = [s for s in ini.sections() if s.startswith("pool:")]
    pool = ini[pool_section]
    (run,) = [v for v in pod["volumes"] if "emptyDir" in v]
    mounts = [[m["mountPath"] for m in c["volumeMounts"] if m["name"] == run["name"]]
              for c in (gw, worker)]
    assert mounts[0] == mounts[1] == [pool["socket_dir"]]
    (sock,) = [e["value"] for e in worker["env"] if e["name"] == "SLUICE_SOCKET"]
    assert sock == pool["socket_dir"] + "/" + pool_section.split(":", 1)[1] + ".sock"
    # ... which the worker (another user) may use: the pod's fsGroup is the
    # socket's group, and the gateway starts no worker of its own
    assert pod["securityContext"]["fsGroup"] == gw["securityContext"]["runAsGroup"]
    assert pool["socket_mode"] == "0660" and pool["socket_group"]
    assert worker["securityContext"]["runAsUser"] != gw["securityContext"]["runAsUser"]
    assert pool["min_workers"] == "0"

    # the Service and the PDB select the Deployment's pods
    labels = dep["spec"]["template"]["metadata"]["labels"]
    svc = one(docs, "Service")
    assert svc["spec"]["selector"].items() <= labels.items()
    assert port_number(gw, svc["spec"]["ports"][0]["targetPort"]) == \
        int(ini["server"]["listen"].rsplit(":", 1)[1])
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()

    # the HPA scales this Deployment on a pods metric the adapter serves
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2  # the PDB leaves one pod
    (m,) = hpa["spec"]["metrics"]
    assert m["type"] == "Pods"
    with open(os.path.join(K8S, "prometheus-adapter", "values.yaml")) as f:
        rules = yaml.safe_load(f)["rules"]["custom"]
    assert m["pods"]["metric"]["name"] in [r["name"]["as"] for r in rules]

    for c in (gw, worker):
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False


def test_overlays_swap_only_the_worker_image(kustomize):
    base = containers(one(render(kustomize, BASE), "Deployment"))
    assert OVERLAYS, "no overlay in examples/kubernetes/overlays"
    seen = {base[1]["image"]}
    for o in OVERLAYS:
        gw, worker = containers(one(render(kustomize, o), "Deployment"))
        assert gw["image"] == base[0]["image"]
        assert os.path.basename(o) in worker["image"]
        seen.add(worker["image"])
        dockerfile = os.path.join(K8S, "Dockerfile.worker-" + os.path.basename(o))
        assert os.path.exists(dockerfile)
    assert len(seen) == len(OVERLAYS) + 1


def test_hpa_metric_is_exported_by_the_gateway(kustomize):
    hpa = one(render(kustomize, BASE), "HorizontalPodAutoscaler")
    name = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    with open(ADMIN_C) as f:
        src = f.read()
    assert f'"{name}"' in src, f"the HPA's metric {name} is not a series server/admin/admin.c exports"



def test_configmap_passes_check_config(kustomize, tmp_path):
    """The rendered sluice.ini is a valid config for this gateway (with the
    pod's group and socket directory swapped for this machine's)."""
    if not os.access(SLUICE, os.X_OK):
        pytest.skip(f"{SLUICE} is not built")
    import grp
    docs = render(kustomize, BASE)
    cm, ini = ini_of(docs)
    text = cm["data"]["sluice.ini"]
    (pool_section,) = [s for s in ini.sections() if s.startswith("pool:")]
    text = text.replace("socket_group = " + ini[pool_section]["socket_group"],
                        "socket_group = " + grp.getgrgid(os.getgid()).gr_name)
    text = text.replace("socket_dir = " + ini[pool_section]["socket_dir"],
                        "socket_dir = " + str(tmp_path))
    path = tmp_path / "sluice.ini"
    path.write_text(text)
    gw, _ = containers(one(docs, "Deployment"))
    # the container's [server] flags, those this gateway knows already
    helptext = subprocess.run([SLUICE, "--help"], capture_output=True, timeout=10).stdout.decode()
    args, extra = list(gw["args"]), []
    i = 0
    while i < len(args):
        if args[i] == "--config":
            i += 2
            continue
        name, has_value = args[i].split("=", 1)[0], "=" in args[i]
        assert name.startswith("--"), args[i]
        words = [args[i]] if has_value else args[i:i + 2]
        if re.search(re.escape(name) + r"\b", helptext):
            extra += words
        i += len(words)
    r = subprocess.run([SLUICE, "--check-config", str(path), *extra],
                       capture_output=True, timeout=10)
    assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")
