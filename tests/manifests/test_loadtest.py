"""`kubectl apply -k loadtest`: the locust master and workers pass the checks manifests/ passes (strict schemas,
the pod security baseline, discovery by the chart's Prometheus), run the repository's own locust files, reach
the app and each other through their NetworkPolicies, and stay out of `kubectl apply -k manifests`."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from dashboard.rows.loadtest import LOCUST_JOB
from declarations import chart
from declarations.manifests import render
from declarations.selectors import selector_matches
from tests.manifests.deploy_spec import APP, APP_NAMESPACE, CRD_KINDS, ROOT, Obj, of_kind, one
from tests.manifests.kube_logic import ingress_allowed, namespace_labels, pod_security_findings, prometheus_selects
from tests.manifests.test_lint import _hadolint
from tests.manifests.test_manifests_schema import _crd_errors, _validate_core

LOADTEST = ROOT / "loadtest"
LOCUST_FILES = ("__init__.py", "locustfile.py", "locust.conf", "exporter.py", "metrics.py", "rows.py")


@pytest.fixture(scope="module")
def objects() -> list[Obj]:
    return render(LOADTEST)


def _deployment(objects: list[Obj], component: str) -> Obj:
    return one(objects, "Deployment", f"locust-{component}")


def _pod(objects: list[Obj], component: str) -> Obj:
    return _deployment(objects, component)["spec"]["template"]


def _headless(objects: list[Obj]) -> Obj:
    """The master Deployment with loadtest/headless.yaml applied as `kubectl patch` does (strategic merge:
    containers merge by name, a list of args is replaced)."""
    master = copy.deepcopy(_deployment(objects, "master"))
    patch = yaml.safe_load((LOADTEST / "headless.yaml").read_text())
    for patched in patch["spec"]["template"]["spec"]["containers"]:
        container = next(c for c in master["spec"]["template"]["spec"]["containers"] if c["name"] == patched["name"])
        container.update(patched)
    return master


def test_the_load_test_renders_in_the_apps_namespace(objects: list[Obj]) -> None:
    assert {o["metadata"].get("namespace") for o in objects} == {APP_NAMESPACE}
    assert {f"{o['kind']}/{o['metadata']['name']}" for o in objects} >= {
        "Deployment/locust-master", "Deployment/locust-worker", "Service/locust-master",
        "ServiceMonitor/locust-master", "NetworkPolicy/locust-master", "NetworkPolicy/locust-worker",
    }  # fmt: skip


def test_core_objects_validate_strictly(objects: list[Obj]) -> None:
    core = [o for o in objects if o["kind"] not in CRD_KINDS] + [_headless(objects)]
    for obj in core:
        _validate_core(obj)


def test_the_servicemonitor_validates_against_the_closed_crd(shared_dir: Path, objects: list[Obj]) -> None:
    monitor = one(objects, "ServiceMonitor")
    assert _crd_errors(shared_dir, monitor) == []
    broken = copy.deepcopy(monitor)
    broken["spec"]["endpoints"][0]["scrapeTimout"] = "5s"
    assert _crd_errors(shared_dir, broken)


@pytest.mark.parametrize("component", ["master", "worker"])
def test_pods_meet_the_security_baseline(objects: list[Obj], component: str) -> None:
    assert pod_security_findings(_pod(objects, component)["spec"]) == []


def test_the_headless_master_keeps_the_baseline_and_changes_only_its_args(objects: list[Obj]) -> None:
    headless, master = _headless(objects), copy.deepcopy(_deployment(objects, "master"))
    assert pod_security_findings(headless["spec"]["template"]["spec"]) == []
    args = headless["spec"]["template"]["spec"]["containers"][0]["args"]
    assert {"--autostart", "--run-time", "--users", "--expect-workers"} <= set(args) and "--headless" not in args
    assert int(args[args.index("--expect-workers") + 1]) == _deployment(objects, "worker")["spec"]["replicas"]
    for pod in (headless, master):
        pod["spec"]["template"]["spec"]["containers"][0].pop("args")
    assert headless == master


def test_every_pod_runs_the_repositorys_locust_files_from_one_configmap(objects: list[Obj]) -> None:
    (configmap,) = of_kind(objects, "ConfigMap")
    assert configmap["data"] == {name: (LOADTEST / name).read_text() for name in LOCUST_FILES}
    # Everything the locustfile imports from its package is in it.
    imported = set(
        re.findall(r"^from loadtest(?:\.(\w+))? import (\w+)", (LOADTEST / "locustfile.py").read_text(), re.M)
    )
    for module, name in imported:
        assert f"{module or name}.py" in configmap["data"], (module, name)
    for component in ("master", "worker"):
        spec = _pod(objects, component)["spec"]
        (volume,) = [v for v in spec["volumes"] if "configMap" in v]
        assert volume["configMap"]["name"] == configmap["metadata"]["name"]
        container = spec["containers"][0]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        # locust.conf names `loadtest/locustfile.py` relative to the working directory of the locust image.
        assert mount["mountPath"] == "/home/locust/loadtest" and mount.get("readOnly") is True
        assert container["args"][:2] == ["--config", "loadtest/locust.conf"]


def test_the_locust_image_is_the_pinned_locust_version() -> None:
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    version = next(d.split("==")[1] for d in dev if d.startswith("locust=="))
    kustomization = yaml.safe_load((LOADTEST / "kustomization.yaml").read_text())
    assert [i["newTag"] for i in kustomization["images"] if i["name"] == "wine-loadtest"] == [version]
    dockerfile = (LOADTEST / "Dockerfile").read_text()
    assert re.search(rf"^FROM locustio/locust:{re.escape(version)}$", dockerfile, re.M)
    assert re.search(r"pip install --no-cache-dir --constraint /tmp/requirements\.lock", dockerfile)


def test_the_locust_dockerfile_is_hadolint_clean() -> None:
    result = _hadolint(LOADTEST / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_workers_target_the_apps_service_by_its_cluster_dns_name(objects: list[Obj], base_objects: list[Obj]) -> None:
    service = one(base_objects, "Service", APP)
    (http,) = [p for p in service["spec"]["ports"] if p["name"] == "http"]
    expected = f"http://{APP}.{service['metadata']['namespace']}.svc.cluster.local"
    expected += "" if http["port"] == 80 else f":{http['port']}"
    for component in ("master", "worker"):
        env = {e["name"]: e.get("value") for e in _pod(objects, component)["spec"]["containers"][0]["env"]}
        assert env["LOCUST_HOST"] == expected


def test_workers_find_the_master_by_its_service(objects: list[Obj]) -> None:
    service = one(objects, "Service", "locust-master")
    args = _pod(objects, "worker")["spec"]["containers"][0]["args"]
    assert "--worker" in args and args[args.index("--master-host") + 1] == service["metadata"]["name"]
    assert selector_matches({"matchLabels": service["spec"]["selector"]}, _pod(objects, "master")["metadata"]["labels"])
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    # locust's defaults: workers connect to 5557, the web UI (and /metrics) listens on 8089.
    assert ports["workers"]["port"] == 5557 and ports["web"]["port"] == 8089
    container_ports = {p["name"]: p["containerPort"] for p in _pod(objects, "master")["spec"]["containers"][0]["ports"]}
    assert container_ports == {"web": 8089, "workers": 5557}


def test_the_apps_network_policy_admits_the_workers_and_not_the_master(
    objects: list[Obj], base_objects: list[Obj]
) -> None:
    # Asked of the app's own NetworkPolicy (manifests/), so the client label is written in one place.
    app = one(base_objects, "Deployment", APP)["spec"]["template"]["metadata"]["labels"]
    policies = of_kind(base_objects, "NetworkPolicy")
    ns = namespace_labels(APP_NAMESPACE)
    for component, admitted in (("worker", True), ("master", False)):
        labels = _pod(objects, component)["metadata"]["labels"]
        assert ingress_allowed(policies, APP_NAMESPACE, app, 8000, "http", APP_NAMESPACE, ns, labels) is admitted


def _egress_allowed(policies: list[Obj], src_labels: dict[str, str], dst_ns: str, dst_labels: dict, port: int) -> bool:
    """Whether the Egress policies selecting a pod of APP_NAMESPACE let it open `port` on a pod (dst)."""
    selecting = [
        p for p in policies
        if selector_matches(p["spec"]["podSelector"], src_labels) and "Egress" in p["spec"]["policyTypes"]
    ]  # fmt: skip
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("egress") or []:
            ports_ok = not rule.get("ports") or any(p.get("port") == port for p in rule["ports"])
            peers_ok = not rule.get("to") or any(
                ((peer.get("namespaceSelector") is None and dst_ns == APP_NAMESPACE)
                 or selector_matches(peer.get("namespaceSelector") or {}, namespace_labels(dst_ns)))
                and selector_matches(peer.get("podSelector") or {}, dst_labels)
                for peer in rule["to"]
            )  # fmt: skip
            if ports_ok and peers_ok:
                return True
    return False


def test_networkpolicies_let_the_workers_reach_the_master_the_app_and_dns(
    objects: list[Obj], base_objects: list[Obj]
) -> None:
    policies = of_kind(objects, "NetworkPolicy")
    worker, master = _pod(objects, "worker")["metadata"]["labels"], _pod(objects, "master")["metadata"]["labels"]
    app_pod = one(base_objects, "Deployment", APP)["spec"]["template"]
    app_port = next(p for p in app_pod["spec"]["containers"][0]["ports"] if p["name"] == "http")["containerPort"]
    dns = {"k8s-app": "kube-dns"}
    assert _egress_allowed(policies, worker, APP_NAMESPACE, master, 5557)
    assert _egress_allowed(policies, worker, APP_NAMESPACE, app_pod["metadata"]["labels"], app_port)
    assert _egress_allowed(policies, worker, "kube-system", dns, 53)
    assert not _egress_allowed(policies, worker, APP_NAMESPACE, app_pod["metadata"]["labels"], 9100)
    assert not _egress_allowed(policies, master, APP_NAMESPACE, app_pod["metadata"]["labels"], app_port)
    # Into the master: the workers on their port; nobody else but the chart's Prometheus (next test).
    everything = of_kind(objects + base_objects, "NetworkPolicy")
    ns = namespace_labels(APP_NAMESPACE)
    assert ingress_allowed(everything, APP_NAMESPACE, master, 5557, "workers", APP_NAMESPACE, ns, worker)
    assert not ingress_allowed(everything, APP_NAMESPACE, master, 5557, "workers", APP_NAMESPACE, ns, {"x": "y"})
    assert not ingress_allowed(everything, APP_NAMESPACE, master, 8089, "web", APP_NAMESPACE, ns, worker)


def test_the_charts_prometheus_discovers_and_may_scrape_the_master(
    objects: list[Obj], base_objects: list[Obj], chart_prometheus: Obj
) -> None:
    monitor = one(objects, "ServiceMonitor")
    selected, why = prometheus_selects(
        monitor, chart_prometheus, "serviceMonitor", namespace_labels(APP_NAMESPACE, base_objects)
    )
    assert selected, why
    service = one(objects, "Service", "locust-master")
    assert selector_matches(monitor["spec"]["selector"], service["metadata"]["labels"])
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    # prometheus-operator names the job after the Service: the dashboard's "Load test" row selects it so.
    assert service["metadata"]["name"] == LOCUST_JOB
    prometheus = chart.prometheus_pod_labels(chart_prometheus)
    master = _pod(objects, "master")["metadata"]["labels"]
    policies = of_kind(objects, "NetworkPolicy")
    monitoring = chart_prometheus["metadata"]["namespace"]
    assert ingress_allowed(
        policies, APP_NAMESPACE, master, 8089, "web", monitoring, namespace_labels(monitoring), prometheus
    )


def test_kubectl_apply_k_manifests_starts_no_locust(base_objects: list[Obj], top_objects: list[Obj]) -> None:
    for objects in (base_objects, top_objects):
        assert not [o for o in objects if "locust" in o["metadata"]["name"]]
        pods = [o["spec"]["template"]["metadata"]["labels"] for o in objects if o["kind"] == "Deployment"]
        assert all(labels.get("app.kubernetes.io/name") != "locust" for labels in pods)
