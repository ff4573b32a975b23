"""The Kubernetes manifests of examples/kubernetes/, rendered offline.

scripts/kustomize (a small Go program on the kustomize API library, pinned
in its go.mod) is built once and renders the bases and every overlay, as
`kubectl kustomize` would; the YAML is parsed and checked for what each
layout needs (docs/kubernetes.md). Both: probes on the admin port, the
admin token from a Secret, grace periods that cover the shutdown delay and
the graceful timeout, HPAs on a metric the gateway really exports. The
sidecar layout (base/): one emptyDir shared by both containers where the
pool's socket is. The remote pool (remote/base/): the workers attach over
TLS to the headless Service selecting the gateway pods, with the token and
certificates from the Secrets the gateway uses too; remote/make-certs makes
certificates that a TLS handshake accepts for the name the workers dial.
The ConfigMaps' sluice.ini go through `sluice --check-config`. The
rendering tests are skipped without a Go new enough for
scripts/kustomize/go.mod.
"""

import configparser
import glob
import os
import re
import shutil
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


@pytest.fixture(scope="module")
def kustomize(tmp_path_factory):
    if SKIP is not None:
        pytest.skip(SKIP)
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
    r = subprocess.run([SLUICE, "--check-config", str(path), *known_flags(gw["args"])],
                       capture_output=True, timeout=10)
    assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")


def known_flags(args):
    """A container's flags but --config, those this gateway knows already."""
    helptext = subprocess.run([SLUICE, "--help"], capture_output=True, timeout=10).stdout.decode()
    args, extra = list(args), []
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
    return extra


# ---- the remote pool: remote/base and its overlays -------------------------

REMOTE = os.path.join(K8S, "remote")
REMOTE_BASE = os.path.join(REMOTE, "base")
REMOTE_OVERLAYS = sorted(glob.glob(os.path.join(REMOTE, "overlays", "*")))
REMOTE_TARGETS = [REMOTE_BASE] + REMOTE_OVERLAYS
REMOTE_IDS = ["remote"] + ["remote-" + os.path.basename(o) for o in REMOTE_OVERLAYS]
# the libraries' own grace after SIGTERM (PROTOCOL.md 10.4, 3)
WORKER_LIBRARY_GRACE_S = 30


def named(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} {name}"
    return found[0]


def selects(selector, pod_labels):
    return selector.items() <= pod_labels.items()


def pod_labels(dep):
    return dep["spec"]["template"]["metadata"]["labels"]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def secret_volume(pod, mounts, path):
    """The Secret volume mounted at the directory of `path`, and its name."""
    for m in mounts:
        if os.path.dirname(path) == m["mountPath"].rstrip("/"):
            (v,) = [v for v in pod["volumes"] if v["name"] == m["name"]]
            assert "secret" in v, f"{path}: {v} is not a Secret"
            return v
    raise AssertionError(f"nothing mounted for {path}")


def remote_parts(docs):
    """gateway Deployment, its container, worker Deployment, its container,
    the ConfigMap, the parsed sluice.ini, the pool section's name."""
    deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deps) == {"sluice-gateway", "sluice-worker"}
    gdep, wdep = deps["sluice-gateway"], deps["sluice-worker"]
    (gw,) = gdep["spec"]["template"]["spec"]["containers"]
    (worker,) = wdep["spec"]["template"]["spec"]["containers"]
    cm, ini = ini_of(docs)
    (pool_section,) = [s for s in ini.sections() if s.startswith("pool:")]
    return gdep, gw, wdep, worker, cm, ini, pool_section


def address(text):
    """HOST, PORT of a tls:HOST:PORT / tcp:HOST:PORT address."""
    m = re.fullmatch(r"(tls|tcp):(.+):(\d+)", text)
    assert m, f"not a tls:/tcp: address: {text!r}"
    return m.group(1), m.group(2), int(m.group(3))


def init_script(gdep):
    (init,) = gdep["spec"]["template"]["spec"]["initContainers"]
    assert init["command"][:2] == ["/bin/sh", "-c"]
    return init, init["command"][2]


@pytest.mark.parametrize("path", REMOTE_TARGETS, ids=REMOTE_IDS)
def test_remote_kinds_and_wiring(kustomize, path):
    docs = render(kustomize, path)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["ConfigMap", "Deployment", "Deployment", "HorizontalPodAutoscaler",
                            "PodDisruptionBudget", "PodDisruptionBudget", "Service", "Service"])
    assert not any(d["kind"] == "Secret" for d in docs)  # no token or key committed
    gdep, gw, wdep, worker, cm, ini, pool_section = remote_parts(docs)
    pool = ini[pool_section]
    gpod, wpod = gdep["spec"]["template"]["spec"], wdep["spec"]["template"]["spec"]
    glabels, wlabels = pod_labels(gdep), pod_labels(wdep)
    assert gdep["spec"]["replicas"] >= 2
    for dep in (gdep, wdep):
        assert selects(dep["spec"]["selector"]["matchLabels"], pod_labels(dep))
    assert not selects(gdep["spec"]["selector"]["matchLabels"], wlabels)
    assert not selects(wdep["spec"]["selector"]["matchLabels"], glabels)

    # the gateway starts no worker: all are remote, attached over TLS
    assert pool["workers"] == "0" and "command" not in pool
    scheme, _, listen_port = address(pool["worker_listen"])
    assert scheme == "tls"
    assert "token" not in pool  # appended by the initContainer, from a Secret

    # probes: /healthz and /readyz on the admin listener's port
    admin_port = int(ini["server"]["admin"].rsplit(":", 1)[1])
    assert gw["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gw["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert port_number(gw, gw[probe]["httpGet"]["port"]) == admin_port
    # the admin token from a Secret
    ref = env_of(gw)["SLUICE_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] and ref["key"]
    assert "admin_token" not in ini["server"]

    # the Service for clients: the gateways' HTTP port; nothing selects workers
    svcs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    http = svcs["sluice"]
    assert selects(http["spec"]["selector"], glabels)
    assert port_number(gw, http["spec"]["ports"][0]["targetPort"]) == \
        int(ini["server"]["listen"].rsplit(":", 1)[1])
    assert not any(selects(s["spec"]["selector"], wlabels) for s in svcs.values())

    # the headless Service: one address per gateway pod, ready or not (a
    # gateway is ready only once workers have attached), on worker_listen's port
    (headless,) = [s for s in svcs.values() if s["spec"].get("clusterIP") == "None"]
    assert headless["metadata"]["name"] == "sluice-gateway-workers"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert selects(headless["spec"]["selector"], glabels)
    (hport,) = headless["spec"]["ports"]
    assert port_number(gw, hport["targetPort"]) == listen_port

    # the workers dial that Service by name, and the gateways' certificate
    # is checked against that name
    wenv = env_of(worker)
    scheme, host, port = address(wenv["SLUICE_SOCKET"]["value"])
    assert scheme == "tls" and port == hport["port"]
    name = headless["metadata"]["name"]
    assert host == name or host.startswith(name + "."), host
    assert "SLUICE_TLS_SERVER_NAME" not in wenv
    assert int(wenv.get("SLUICE_RESOLVE_INTERVAL", {"value": "10"})["value"]) >= 1

    # the pool's token: one Secret key, read by the initContainer as a file
    # and by the workers as SLUICE_TOKEN
    wtok = wenv["SLUICE_TOKEN"]
    assert "value" not in wtok
    tref = wtok["valueFrom"]["secretKeyRef"]
    init, script = init_script(gdep)
    assert init["image"] == gw["image"]  # the gateway image has /bin/sh
    (tmount,) = [m for m in init["volumeMounts"] if m["mountPath"] in script and
                 "secret" in [v for v in gpod["volumes"] if v["name"] == m["name"]][0]]
    (tvol,) = [v for v in gpod["volumes"] if v["name"] == tmount["name"]]
    assert tvol["secret"]["secretName"] == tref["name"]
    assert tmount["mountPath"].rstrip("/") + "/" + tref["key"] in script
    assert "[pool:%s]" in script and f" {pool_section.split(':', 1)[1]} " in script
    assert not any(m["name"] == tmount["name"] for m in gw["volumeMounts"])

    # sluice.ini: the initContainer writes it on an emptyDir the gateway
    # reads at --config, from the ConfigMap's template
    conf = flag(gw["args"], "--config")
    (cmount,) = [m for m in gw["volumeMounts"]
                 if conf == m["mountPath"].rstrip("/") + "/sluice.ini"]
    (cvol,) = [v for v in gpod["volumes"] if v["name"] == cmount["name"]]
    assert "emptyDir" in cvol and cmount.get("readOnly") is True
    (imount,) = [m for m in init["volumeMounts"] if m["name"] == cvol["name"]]
    assert "> " + imount["mountPath"].rstrip("/") + "/sluice.ini" in script
    (tpl,) = [v for v in gpod["volumes"] if v.get("configMap", {}).get("name") == cm["metadata"]["name"]]
    (tplmount,) = [m for m in init["volumeMounts"] if m["name"] == tpl["name"]]
    assert tplmount["mountPath"].rstrip("/") + "/sluice.ini" in script

    # the pool's socket_dir is writable (the root filesystem is not)
    (run,) = [m for m in gw["volumeMounts"] if m["mountPath"] == pool["socket_dir"]]
    assert "emptyDir" in [v for v in gpod["volumes"] if v["name"] == run["name"]][0]

    # TLS files from Secrets: the gateway's certificate, key and client CA;
    # the workers' CA, certificate and key; readable by the container's group
    gtls = {secret_volume(gpod, gw["volumeMounts"], pool[k])["secret"]["secretName"]
            for k in ("tls_cert", "tls_key", "client_ca")}
    wtls = {secret_volume(wpod, worker["volumeMounts"], wenv[k]["value"])["secret"]["secretName"]
            for k in ("SLUICE_TLS_CA", "SLUICE_TLS_CERT", "SLUICE_TLS_KEY")}
    assert len(gtls) == len(wtls) == 1 and gtls != wtls
    for p, c in ((gpod, gw), (wpod, worker)):
        assert p["securityContext"]["fsGroup"] == c["securityContext"]["runAsGroup"]
        for v in p["volumes"]:
            if "secret" in v:
                assert v["secret"]["defaultMode"] & 0o047 == 0o040, v  # group r, others none
    assert worker["securityContext"]["runAsUser"] != gw["securityContext"]["runAsUser"]

    # SIGTERM to a gateway: readiness fails for the shutdown delay, then the
    # drain; the kubelet's SIGKILL comes later than both
    delay = duration_s(flag(gw["args"], "--shutdown-delay"))
    graceful = duration_s(flag(gw["args"], "--graceful-timeout") or
                          ini["server"].get("graceful_timeout", "30s"))
    assert delay > 0
    assert gpod["terminationGracePeriodSeconds"] > delay + graceful
    assert "lifecycle" not in gw  # --shutdown-delay instead of a preStop
    # SIGTERM to a worker: RETIRE, DRAIN with the pool's graceful_timeout,
    # the link closed 2 s after it at the latest, the library's own grace
    pool_graceful = duration_s(pool.get("graceful_timeout", "30s"))
    assert wpod["terminationGracePeriodSeconds"] > pool_graceful + 2
    assert wpod["terminationGracePeriodSeconds"] > WORKER_LIBRARY_GRACE_S

    # one PDB per Deployment
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    for labels in (glabels, wlabels):
        (pdb,) = [p for p in pdbs if selects(p["spec"]["selector"]["matchLabels"], labels)]
        assert pdb["spec"]["maxUnavailable"] == 1

    # the HPA scales the workers on the gateways' busy ratio of this pool,
    # an external metric the adapter serves
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    assert hpa["spec"]["scaleTargetRef"]["name"] == wdep["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2  # the PDB leaves one worker
    (m,) = hpa["spec"]["metrics"]
    assert m["type"] == "External"
    metric = m["external"]["metric"]
    assert metric["selector"]["matchLabels"] == {"pool": pool_section.split(":", 1)[1]}
    assert 0 < float(re.sub(r"m$", "e-3", str(m["external"]["target"]["value"]))) < 1
    assert m["external"]["target"]["type"] == "Value"
    with open(os.path.join(K8S, "prometheus-adapter", "values.yaml")) as f:
        rules = yaml.safe_load(f)["rules"]["external"]
    (rule,) = [r for r in rules if r["name"]["as"] == metric["name"]]
    assert rule["metricsQuery"].startswith("sum(")  # every gateway's share
    with open(ADMIN_C) as f:
        assert f'"{metric["name"]}"' in f.read()

    for c in (gw, worker, init):
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_remote_overlays_swap_only_the_worker_image(kustomize):
    base = remote_parts(render(kustomize, REMOTE_BASE))
    assert REMOTE_OVERLAYS, "no overlay in examples/kubernetes/remote/overlays"
    seen = {base[3]["image"]}
    for o in REMOTE_OVERLAYS:
        parts = remote_parts(render(kustomize, o))
        assert parts[1]["image"] == base[1]["image"]
        assert os.path.basename(o) in parts[3]["image"]
        seen.add(parts[3]["image"])
        assert os.path.exists(os.path.join(K8S, "Dockerfile.worker-" + os.path.basename(o)))
    assert len(seen) == len(REMOTE_OVERLAYS) + 1


def run_init_script(gdep, tmp_path):
    """The initContainer's script with its mounts under tmp_path: the
    ConfigMap's template and the token Secret in, sluice.ini out."""
    init, script = init_script(gdep)
    mounts = sorted(init["volumeMounts"], key=lambda m: -len(m["mountPath"]))
    for m in mounts:
        d = tmp_path / m["name"]
        d.mkdir(exist_ok=True)
        script = script.replace(m["mountPath"].rstrip("/"), str(d))
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, timeout=10)


def test_remote_init_container_appends_the_token(kustomize, tmp_path):
    docs = render(kustomize, REMOTE_BASE)
    gdep, gw, _, worker, cm, ini, pool_section = remote_parts(docs)
    init, _ = init_script(gdep)
    names = {m["name"]: m for m in init["volumeMounts"]}
    vols = {v["name"]: v for v in gdep["spec"]["template"]["spec"]["volumes"]}
    (tpl,) = [n for n in names if "configMap" in vols[n]]
    (tok,) = [n for n in names if "secret" in vols[n]]
    (out,) = [n for n in names if "emptyDir" in vols[n]]
    (tpl_dir := tmp_path / tpl).mkdir()
    (tpl_dir / "sluice.ini").write_text(cm["data"]["sluice.ini"])
    (tmp_path / tok).mkdir()
    key = env_of(worker)["SLUICE_TOKEN"]["valueFrom"]["secretKeyRef"]["key"]
    (tmp_path / tok / key).write_text("0123abcd;#x\n")  # kubectl's --from-file keeps the newline
    r = run_init_script(gdep, tmp_path)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    written = tmp_path / out / "sluice.ini"
    assert written.stat().st_mode & 0o077 == 0
    cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=None,
                                   comment_prefixes=("#", ";"), strict=False)
    cp.read_string(written.read_text())
    assert cp[pool_section]["token"] == "0123abcd;#x"
    assert written.read_text().startswith(cm["data"]["sluice.ini"])
    # a token the gateway would misread is refused, and the pod does not start
    for bad in ("", "two words", "a\nb"):
        (tmp_path / tok / key).write_text(bad)
        written.unlink(missing_ok=True)
        r = run_init_script(gdep, tmp_path)
        assert r.returncode != 0 and b"sluice-pool-token" in r.stderr, bad
        assert not written.exists()


OPENSSL = shutil.which("openssl")


def make_certs(tmp_path, namespace="sluice"):
    if OPENSSL is None:
        pytest.skip("no openssl command")
    out = tmp_path / "certs"
    r = subprocess.run([os.path.join(REMOTE, "make-certs"), namespace, str(out)],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return out


def worker_socket_host():
    with open(os.path.join(REMOTE_BASE, "worker.yaml")) as f:
        (dep,) = [d for d in yaml.safe_load_all(f) if d]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return address(env_of(c)["SLUICE_SOCKET"]["value"])[1]


def tls_handshake(certs, server_name, client_cert=True):
    """A TLS handshake, the gateway's side with its certificate and the
    client CA required, the worker's verifying `server_name`; None or the
    error."""
    import socket
    import ssl
    import threading
    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv.load_cert_chain(certs / "gateway.crt", certs / "gateway.key")
    srv.load_verify_locations(certs / "ca.crt")
    srv.verify_mode = ssl.CERT_REQUIRED
    srv.set_alpn_protocols(["sluice/1"])
    cli = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cli.load_verify_locations(certs / "ca.crt")
    if client_cert:
        cli.load_cert_chain(certs / "worker.crt", certs / "worker.key")
    cli.set_alpn_protocols(["sluice/1"])
    a, b = socket.socketpair()
    a.settimeout(10)
    b.settimeout(10)

    def serve():
        try:
            with srv.wrap_socket(a, server_side=True) as s:
                s.recv(1)
        except (ssl.SSLError, OSError):
            pass
    t = threading.Thread(target=serve)
    t.start()
    try:
        with cli.wrap_socket(b, server_hostname=server_name) as s:
            s.sendall(b"x")
            assert s.selected_alpn_protocol() == "sluice/1"
            s.recv(1)  # TLS 1.3: the server's verdict on the client certificate
        return None
    except (ssl.SSLError, OSError) as e:
        return e
    finally:
        a.close()
        b.close()
        t.join(10)


def test_make_certs_fit_the_workers_address(tmp_path):
    """remote/make-certs: a gateway certificate that a worker accepts for
    the host it dials (and its qualified forms), not for a pod IP, and a
    client certificate the gateway accepts."""
    certs = make_certs(tmp_path)
    host = worker_socket_host()
    for name in (host, host + ".sluice.svc.cluster.local"):
        assert tls_handshake(certs, name) is None, name
    assert tls_handshake(certs, "10.0.0.7") is not None
    assert tls_handshake(certs, "sluice-gateway-workers.other.svc") is not None
    assert tls_handshake(certs, host, client_cert=False) is not None
    for f in ("ca.key", "gateway.key", "worker.key"):
        assert (certs / f).stat().st_mode & 0o077 == 0, f


def test_cert_manager_certificates_fit_the_manifests(kustomize):
    with open(os.path.join(REMOTE, "cert-manager.yaml")) as f:
        certs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(f)
                 if d and d["kind"] == "Certificate"}
    docs = render(kustomize, REMOTE_BASE)
    gdep, gw, wdep, worker, _, ini, pool_section = remote_parts(docs)
    pool = ini[pool_section]
    gsecret = secret_volume(gdep["spec"]["template"]["spec"], gw["volumeMounts"],
                            pool["tls_cert"])["secret"]["secretName"]
    wsecret = secret_volume(wdep["spec"]["template"]["spec"], worker["volumeMounts"],
                            env_of(worker)["SLUICE_TLS_CERT"]["value"])["secret"]["secretName"]
    by_secret = {c["spec"]["secretName"]: c["spec"] for c in certs.values()}
    host = address(env_of(worker)["SLUICE_SOCKET"]["value"])[1]
    assert host in by_secret[gsecret]["dnsNames"]
    assert "server auth" in by_secret[gsecret]["usages"]
    assert "client auth" in by_secret[wsecret]["usages"]
    # both from the one CA issuer: each side's ca.crt verifies the other
    assert by_secret[gsecret]["issuerRef"] == by_secret[wsecret]["issuerRef"]
    # the file names the Deployments use are those cert-manager writes
    assert {os.path.basename(pool[k]) for k in ("tls_cert", "tls_key", "client_ca")} == \
        {"tls.crt", "tls.key", "ca.crt"}


def test_remote_configmap_passes_check_config(kustomize, tmp_path):
    """The sluice.ini the initContainer writes, with make-certs' files and
    this machine's socket directory, is a valid config for this gateway."""
    if not os.access(SLUICE, os.X_OK):
        pytest.skip(f"{SLUICE} is not built")
    docs = render(kustomize, REMOTE_BASE)
    gdep, gw, _, worker, cm, ini, pool_section = remote_parts(docs)
    certs = make_certs(tmp_path)
    init, _ = init_script(gdep)
    vols = {v["name"]: v for v in gdep["spec"]["template"]["spec"]["volumes"]}
    names = {m["name"] for m in init["volumeMounts"]}
    (tpl,) = [n for n in names if "configMap" in vols[n]]
    (tok,) = [n for n in names if "secret" in vols[n]]
    (out,) = [n for n in names if "emptyDir" in vols[n]]
    pool = ini[pool_section]
    text = cm["data"]["sluice.ini"]
    for key, f in (("tls_cert", "gateway.crt"), ("tls_key", "gateway.key"), ("client_ca", "ca.crt")):
        text = text.replace(f"{key} = {pool[key]}", f"{key} = {certs / f}")
    text = text.replace("socket_dir = " + pool["socket_dir"], "socket_dir = " + str(tmp_path))
    (tmp_path / tpl).mkdir()
    (tmp_path / tpl / "sluice.ini").write_text(text)
    (tmp_path / tok).mkdir()
    key = env_of(worker)["SLUICE_TOKEN"]["valueFrom"]["secretKeyRef"]["key"]
    (tmp_path / tok / key).write_text("0123456789abcdef")
    r = run_init_script(gdep, tmp_path)
    assert r.returncode == 0, r.stderr.decode(errors="replace")

    r = subprocess.run([SLUICE, "--check-config", str(tmp_path / out / "sluice.ini"),
                        *known_flags(gw["args"])], capture_output=True, timeout=10)
    assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")
