"""`python -m offcluster doctor`: the project's manifests pass, and each classic way a ServiceMonitor ends up
with no target, made by editing a copy of the rendered objects, is diagnosed at its hop and only there."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from declarations import chart
from declarations.autoscaling import chart_services
from declarations.manifests import CANARY
from doctor import cli as doctor
from doctor.report import SERVICE_NAME_LABEL, Cluster, Hop, Report
from doctor.walk import diagnose
from harness.server import free_port
from offcluster.__main__ import main as cli
from tests.manifests import kube_api
from tests.manifests.deploy_spec import APP_NAMESPACE, MANIFESTS, MONITORING_NAMESPACE, Obj, one

Edit = Callable[[list[Obj], Obj], None]


# What the doctor reads offline: the chart's objects rendered with helmfile's values, else derived from the values.
@pytest.fixture(scope="module")
def prometheus() -> Obj:
    return chart.prometheus()


@pytest.fixture(scope="module")
def sidecar() -> dict[str, Any]:
    return chart.grafana_sidecar()


def broken(reports: list[Report]) -> dict[str, list[Hop]]:
    found: dict[str, list[Hop]] = {}
    for report in reports:
        for hop in report.hops:
            if not hop.ok:
                found.setdefault(hop.key, []).append(hop)
    return found


# ---- the project's own manifests ----------------------------------------------------------------------------


@pytest.mark.parametrize("directory", [MANIFESTS, CANARY], ids=["manifests", "canary"])
def test_the_projects_manifests_pass_every_hop(directory: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert doctor.main([str(directory)]) == 0
    out = capsys.readouterr().out
    assert "BROKEN" not in out
    hops = [line.split()[1] for line in out.splitlines() if line.startswith("  ok ")]
    for key in ("prometheus-selector", "service", "port", "pods", "target-port", "readiness-probe", "network-policy"):
        assert key in hops, f"the walk has no {key} hop:\n{out}"
    assert "rule-selector" in hops and "sidecar" in hops
    for key in ("scale-target", "prometheus-server", "query-metrics", "query-labels"):
        assert key in hops, f"the ScaledObject's walk has no {key} hop:\n{out}"
    assert out.splitlines()[-1].startswith("result: ok, 1 endpoint(s) reach a pod port")


def test_the_canary_walk_reaches_both_tracks(capsys: pytest.CaptureFixture[str]) -> None:
    doctor.main([str(CANARY)])
    pods = next(line for line in capsys.readouterr().out.splitlines() if line.split()[1:2] == ["pods"])
    assert "Deployment ml-serving/wine-classifier (pod template)" in pods
    assert "Deployment ml-serving/wine-classifier-canary (pod template)" in pods


# ---- broken copies: one per hop ----------------------------------------------------------------------------


def _monitor(objects: list[Obj], _: Obj) -> Obj:
    return one(objects, "ServiceMonitor")


def _service(objects: list[Obj], _: Obj) -> Obj:
    return one(objects, "Service")


def _container(objects: list[Obj]) -> Obj:
    return one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def _metrics_port(objects: list[Obj]) -> Obj:
    return next(p for p in _service(objects, {})["spec"]["ports"] if p["name"] == "metrics")


def _wrong_release(objects: list[Obj], _: Obj) -> None:
    # The classic copy-paste from another install: `release: prometheus`.
    _monitor(objects, _)["metadata"]["labels"]["release"] = "prometheus"


def _restricted_namespaces(_: list[Obj], prometheus: Obj) -> None:
    prometheus["spec"]["serviceMonitorNamespaceSelector"] = {"matchLabels": {"team": "observability"}}


def _selector_on_service_selector(objects: list[Obj], _: Obj) -> None:
    # Matching the Service's spec.selector instead of its labels, with a label only the pods carry.
    _monitor(objects, _)["spec"]["selector"] = {"matchLabels": {"track": "stable"}}


def _looks_in_another_namespace(objects: list[Obj], _: Obj) -> None:
    _monitor(objects, _)["spec"]["namespaceSelector"] = {"matchNames": ["default"]}


def _port_number_name(objects: list[Obj], _: Obj) -> None:
    _monitor(objects, _)["spec"]["endpoints"][0]["port"] = "http-metrics"


def _port_by_number(objects: list[Obj], _: Obj) -> None:
    _monitor(objects, _)["spec"]["endpoints"][0]["port"] = "9100"


def _service_selects_nothing(objects: list[Obj], _: Obj) -> None:
    _service(objects, _)["spec"]["selector"] = {"app": "wine-classifier"}


def _service_without_selector(objects: list[Obj], _: Obj) -> None:
    del _service(objects, _)["spec"]["selector"]


def _target_port_typo(objects: list[Obj], _: Obj) -> None:
    _metrics_port(objects)["targetPort"] = "prometheus"


def _no_readiness_probe(objects: list[Obj], _: Obj) -> None:
    del _container(objects)["readinessProbe"]


def _policy_for_another_prometheus(objects: list[Obj], _: Obj) -> None:
    rule = one(objects, "NetworkPolicy")["spec"]["ingress"][0]
    rule["from"][0]["podSelector"]["matchLabels"]["operator.prometheus.io/name"] = "k8s"


def _rule_without_release(objects: list[Obj], _: Obj) -> None:
    rule = next(o for o in objects if o["kind"] == "PrometheusRule" and o["metadata"]["name"].endswith("-slo"))
    del rule["metadata"]["labels"]["release"]


def _dashboard_label_value(objects: list[Obj], _: Obj) -> None:
    one(objects, "ConfigMap", "wine-classifier-dashboard")["metadata"]["labels"]["grafana_dashboard"] = "true"


def _scaled_target_typo(objects: list[Obj], _: Obj) -> None:
    one(objects, "ScaledObject")["spec"]["scaleTargetRef"]["name"] = "wine-clasifier"


def _scaled_asks_alertmanager(objects: list[Obj], _: Obj) -> None:
    trigger = one(objects, "ScaledObject")["spec"]["triggers"][0]["metadata"]
    trigger["serverAddress"] = "http://kube-prometheus-stack-alertmanager.monitoring.svc:9093"


def _scaled_query_misnamed(objects: list[Obj], _: Obj) -> None:
    trigger = one(objects, "ScaledObject")["spec"]["triggers"][0]["metadata"]
    trigger["query"] = trigger["query"].replace("http_requests_total", "http_request_total")


BROKEN_COPIES: list[tuple[str, Edit, str, str]] = [
    ("wrong-release-label", _wrong_release, "prometheus-selector", "add the label release=kube-prometheus-stack"),
    ("namespace-not-selected", _restricted_namespaces, "prometheus-namespace", "label namespace ml-serving"),
    ("selector-matches-no-service", _selector_on_service_selector, "service", "match the Service's metadata.labels"),
    ("monitor-looks-in-another-namespace", _looks_in_another_namespace, "service", "namespaceSelector.matchNames"),
    ("endpoint-port-not-a-service-port", _port_number_name, "port", "set endpoints[0].port to the name"),
    (
        "endpoint-port-a-number",
        _port_by_number,
        "port",
        "takes a Service port's name, not its number: set it to metrics",
    ),
    ("service-selects-no-pod", _service_selects_nothing, "pods", "a subset of the pod template's metadata.labels"),
    (
        "service-without-selector",
        _service_without_selector,
        "pods",
        "give Service ml-serving/wine-classifier a spec.selector",
    ),
    ("target-port-not-a-container-port", _target_port_typo, "target-port", "set targetPort of the Service port"),
    ("no-readiness-probe", _no_readiness_probe, "readiness-probe", "add a readinessProbe to container model-server"),
    ("networkpolicy-keeps-prometheus-out", _policy_for_another_prometheus, "network-policy", "add an ingress rule"),
    ("rule-not-selected", _rule_without_release, "rule-selector", "add the label release=kube-prometheus-stack"),
    ("dashboard-not-seen", _dashboard_label_value, "sidecar", "set the label grafana_dashboard=1"),
    ("scaledobject-target-typo", _scaled_target_typo, "scale-target", "set spec.scaleTargetRef.name"),
    (
        "scaledobject-asks-alertmanager",
        _scaled_asks_alertmanager,
        "prometheus-server",
        "monitoring/kube-prometheus-stack-prometheus:9090",
    ),
    ("scaledobject-query-misnamed", _scaled_query_misnamed, "query-metrics", "use a name of app/metrics.py"),
]


@pytest.mark.parametrize(("edit", "hop", "fix"), [c[1:] for c in BROKEN_COPIES], ids=[c[0] for c in BROKEN_COPIES])
def test_a_broken_copy_is_diagnosed_at_its_hop_only(
    base_objects: list[Obj], prometheus: Obj, sidecar: dict[str, Any], edit: Edit, hop: str, fix: str
) -> None:
    objects, mine = copy.deepcopy(base_objects), copy.deepcopy(prometheus)
    edit(objects, mine)
    reports = diagnose(Cluster(objects, [mine], sidecar, live=False, origin="a broken copy"))
    found = broken(reports)
    assert set(found) == {hop}, doctor.format_reports(Cluster(objects, [mine], sidecar, False, "copy"), reports)
    assert fix in found[hop][0].fix
    assert doctor.exit_code(reports) == 1


def test_the_broken_copies_cover_every_hop_of_a_service_monitor() -> None:
    covered = {hop for _, _, hop, _ in BROKEN_COPIES}
    walked = {"prometheus-selector", "prometheus-namespace", "service", "port", "pods", "target-port"}
    assert walked | {"readiness-probe", "network-policy", "rule-selector", "sidecar"} <= covered
    assert {"scale-target", "prometheus-server", "query-metrics"} <= covered


def test_the_command_prints_the_broken_hop_with_its_fix(
    base_objects: list[Obj], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = copy.deepcopy(base_objects)
    _port_number_name(objects, {})
    (tmp_path / "all.yaml").write_text(yaml.safe_dump_all(objects))
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - all.yaml\n")
    assert doctor.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if line.startswith("  BROKEN")]
    assert line.split()[:2] == ["BROKEN", "port"]
    assert (
        "'http-metrics' names no port of Service ml-serving/wine-classifier (ports: http→http, metrics→metrics)" in line
    )
    assert "Fix: set endpoints[0].port" in line
    assert out.splitlines()[-1].startswith("result: BROKEN")


def test_a_numeric_target_port_reaches_the_pod_even_undeclared(
    base_objects: list[Obj], prometheus: Obj, sidecar: dict[str, Any]
) -> None:
    objects = copy.deepcopy(base_objects)
    _metrics_port(objects)["targetPort"] = 9100
    del _container(objects)["ports"][1]  # the container no longer declares 9100...
    # ...so a NetworkPolicy naming the port `metrics` resolves to nothing: it must give the number too.
    one(objects, "NetworkPolicy")["spec"]["ingress"][0]["ports"][0]["port"] = 9100
    reports = diagnose(Cluster(objects, [prometheus], sidecar, live=False, origin="numeric targetPort"))
    assert broken(reports) == {}
    hop = next(h for r in reports for h in r.hops if h.key == "target-port")
    assert "targetPort 9100 is declared by no container" in hop.text


# ---- bad input -------------------------------------------------------------------------------------------------


def _bad_inputs(tmp_path: Path) -> dict[str, list[str]]:
    invalid = tmp_path / "invalid"
    invalid.mkdir()
    (invalid / "kustomization.yaml").write_text("resources: [service.yaml\n")
    (tmp_path / "not.json").write_text("{not json")
    (tmp_path / "not-a-list.json").write_text('{"items": 3}')
    return {
        "missing directory": [str(tmp_path / "nowhere")],
        "invalid yaml": [str(invalid)],
        "a file, not a directory": [str(tmp_path / "not.json")],
        "invalid json": ["--from-json", str(tmp_path / "not.json")],
        "json of no kind": ["--from-json", str(tmp_path / "not-a-list.json")],
        "unreadable json": ["--from-json", str(tmp_path / "nowhere.json")],
    }


def test_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for case, argv in _bad_inputs(tmp_path).items():
        assert doctor.main(argv) == 2, case
        captured = capsys.readouterr()
        assert captured.out == "", case
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("doctor: "), (case, captured.err)
        assert "Traceback" not in captured.err


def test_a_kustomization_without_monitors_is_not_a_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - namespace.yaml\n")
    (tmp_path / "namespace.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: empty\n")
    assert doctor.main([str(tmp_path)]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "result: BROKEN, no ServiceMonitor or PodMonitor to walk"


def test_a_directory_and_live_mode_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        doctor.main([str(MANIFESTS), "--live"])
    assert exited.value.code == 2
    assert "not both" in capsys.readouterr().err


def test_live_without_a_reachable_cluster_exits_2_with_kubectls_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A kubeconfig naming a port nothing listens on: the real kubectl, failing as it does for a user.
    monkeypatch.setenv("KUBECONFIG", str(kube_api.kubeconfig(tmp_path / "kubeconfig", free_port())))
    assert cli(["doctor", "--live"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("doctor: `kubectl get` failed: The connection to the server 127.0.0.1:") and "\n" not in err


# ---- live mode: documents built from the rendered manifests, with status filled in -----------------------------


def _ready(ready: bool) -> dict[str, Any]:
    return {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}


def _live(base_objects: list[Obj], prometheus: Obj, sidecar: dict[str, Any]) -> list[Obj]:
    """What `kubectl get ... -A -o json` returns once helmfile and `kubectl apply -k manifests` have run."""
    objects = copy.deepcopy(base_objects)
    objects.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": MONITORING_NAMESPACE}})
    deployed = copy.deepcopy(prometheus)
    deployed["status"] = {"availableReplicas": 1, "replicas": 1}
    objects.append(deployed)
    # The Service the chart puts in front of it, which the ScaledObject's trigger asks.
    objects.extend(chart_services(None, deployed, chart.prometheus_pod_labels(deployed)))
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"prometheus-{deployed['metadata']['name']}-0",
                "namespace": deployed["metadata"]["namespace"],
                "labels": chart.prometheus_pod_labels(deployed),
            },
            "spec": {"containers": [{"name": "prometheus"}]},
            "status": _ready(True),
        }
    )
    env = [{"name": "LABEL", "value": sidecar["label"]}, {"name": "LABEL_VALUE", "value": sidecar["label_value"]}]
    names = sidecar["namespaces"]
    env.append({"name": "NAMESPACE", "value": names if isinstance(names, str) else ",".join(names)})
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "kube-prometheus-stack-grafana-0", "namespace": MONITORING_NAMESPACE},
            "spec": {"containers": [{"name": doctor.SIDECAR_CONTAINER, "env": env}, {"name": "grafana"}]},
            "status": _ready(True),
        }
    )
    deployment = one(base_objects, "Deployment")
    template = deployment["spec"]["template"]
    endpoints = []
    for i in range(deployment["spec"]["replicas"]):
        name = f"wine-classifier-5d8f7-{i}"
        meta = {"name": name, "namespace": APP_NAMESPACE, "labels": template["metadata"]["labels"]}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"], "status": _ready(True)}
        objects.append(copy.deepcopy(pod))
        endpoints.append(
            {"addresses": [f"10.0.0.{i + 10}"], "conditions": {"ready": True}, "targetRef": {"name": name}}
        )
    service = one(base_objects, "Service")
    objects.append(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "wine-classifier-x7k2p",
                "namespace": APP_NAMESPACE,
                "labels": {SERVICE_NAME_LABEL: service["metadata"]["name"]},
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [
                {"name": p["name"], "port": 9100 if p["name"] == "metrics" else 8000} for p in service["spec"]["ports"]
            ],
        }
    )
    return objects


def _run_live(objects: list[Obj], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    saved = tmp_path / "cluster.json"
    saved.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    code = doctor.main(["--from-json", str(saved)])
    return code, capsys.readouterr().out


def _broken_keys(out: str) -> set[str]:
    return {line.split()[1] for line in out.splitlines() if line.startswith("  BROKEN")}


@pytest.fixture
def live(base_objects: list[Obj], prometheus: Obj, sidecar: dict[str, Any]) -> list[Obj]:
    return _live(base_objects, prometheus, sidecar)


def _app_pods(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o["kind"] == "Pod" and o["metadata"]["namespace"] == APP_NAMESPACE]


def test_live_a_healthy_cluster_passes(live: list[Obj], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run_live(live, tmp_path, capsys)
    assert code == 0, out
    assert "  ok     pods-ready           2/2 pods ready" in out
    assert "2 endpoint(s) on port metrics, 2 ready" in out


def test_live_one_unready_pod_is_named_and_the_other_still_scraped(
    live: list[Obj], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unready = _app_pods(live)[0]
    unready["status"] = _ready(False)
    code, out = _run_live(live, tmp_path, capsys)
    assert code == 0, out
    assert f"1/2 pods ready: not ready Pod {APP_NAMESPACE}/{unready['metadata']['name']}" in out


def test_live_no_ready_pod_breaks_readiness_and_its_endpoints_stay_targets(
    live: list[Obj], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for pod in _app_pods(live):
        pod["status"] = _ready(False)
    for endpoint in one(live, "EndpointSlice")["endpoints"]:
        endpoint["conditions"]["ready"] = False
    code, out = _run_live(live, tmp_path, capsys)
    assert code == 1
    assert _broken_keys(out) == {"pods-ready"}, out
    assert "0/2 pods ready" in out
    # Prometheus still makes targets of not-ready endpoints (labelled ready=false).
    assert "2 endpoint(s) on port metrics, 0 ready" in out


def test_live_an_empty_endpointslice_is_broken(
    live: list[Obj], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one(live, "EndpointSlice")["endpoints"] = []
    code, out = _run_live(live, tmp_path, capsys)
    assert code == 1
    assert _broken_keys(out) == {"endpointslice"}, out
    assert "EndpointSlice ml-serving/wine-classifier-x7k2p: 0 endpoint(s) on port metrics, 0 ready" in out


def test_live_a_prometheus_in_another_namespace_is_kept_out_by_the_policy(
    live: list[Obj], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The chart installed into `observability` instead of `monitoring`: selection still works (the chart's
    # namespace selectors are {}), but the NetworkPolicy admits the monitoring namespace only.
    for obj in live:
        if obj["kind"] in ("Prometheus", "Pod") and obj["metadata"]["namespace"] == MONITORING_NAMESPACE:
            obj["metadata"]["namespace"] = "observability"
    code, out = _run_live(live, tmp_path, capsys)
    assert code == 1
    assert _broken_keys(out) == {"network-policy"}, out
    assert "from namespaceSelector kubernetes.io/metadata.name=observability" in out


def test_live_a_prometheus_without_namespace_selector_searches_only_its_own(
    live: list[Obj], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A hand-written Prometheus object: a null namespace selector means its own namespace, not all.
    spec = one(live, "Prometheus")["spec"]
    del spec["serviceMonitorNamespaceSelector"], spec["ruleNamespaceSelector"]
    code, out = _run_live(live, tmp_path, capsys)
    assert code == 1
    assert _broken_keys(out) == {"prometheus-namespace", "rule-namespace"}, out
    assert "set spec.serviceMonitorNamespaceSelector: {} on the Prometheus" in out


# ---- PodMonitor -------------------------------------------------------------------------------------------------


def _as_pod_monitor(objects: list[Obj], port: str) -> list[Obj]:
    """The ServiceMonitor rewritten as the PodMonitor that scrapes the same pods without the Service."""
    objects = copy.deepcopy(objects)
    monitor = one(objects, "ServiceMonitor")
    monitor["kind"] = "PodMonitor"
    spec = monitor["spec"]
    spec["podMetricsEndpoints"] = [{"port": port, "path": "/metrics"}]
    del spec["endpoints"]
    return objects


@pytest.mark.parametrize(("port", "broken_hops"), [("metrics", set()), ("http-metrics", {"port"})])
def test_a_pod_monitor_is_walked_to_the_container_port(
    base_objects: list[Obj], prometheus: Obj, sidecar: dict[str, Any], port: str, broken_hops: set[str]
) -> None:
    cluster = Cluster(_as_pod_monitor(base_objects, port), [prometheus], sidecar, live=False, origin="pod monitor")
    reports = diagnose(cluster)
    [walked] = [r for r in reports if r.subject.startswith("PodMonitor")]
    assert [h.key for h in walked.hops][:3] == ["prometheus-selector", "prometheus-namespace", "pods"]
    assert set(broken(reports)) == broken_hops
    if not broken_hops:
        assert walked.hops[-1].key == "network-policy"


def test_live_a_service_without_selector_is_judged_by_its_endpointslices(
    live: list[Obj], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Like the operator's kubelet Service: no selector, endpoints written by a controller.
    del one(live, "Service", one(live, "ServiceMonitor")["metadata"]["name"])["spec"]["selector"]
    code, out = _run_live(live, tmp_path, capsys)
    assert code == 0, out
    assert "has no spec.selector: another controller writes its endpoints" in out
    assert "2 endpoint(s) on port metrics, 2 ready" in out
    one(live, "EndpointSlice")["endpoints"] = []
    code, out = _run_live(live, tmp_path, capsys)
    assert code == 1 and _broken_keys(out) == {"endpointslice"}, out


def test_a_wrong_scale_target_is_printed_with_the_deployments_there(
    base_objects: list[Obj], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = copy.deepcopy(base_objects)
    _scaled_target_typo(objects, {})
    (tmp_path / "all.yaml").write_text(yaml.safe_dump_all(objects))
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - all.yaml\n")
    assert doctor.main([str(tmp_path)]) == 1
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  BROKEN")]
    assert line.split()[:2] == ["BROKEN", "scale-target"]
    assert "Deployment ml-serving/wine-clasifier, which does not exist (Deployments there: wine-classifier)" in line


# ---- live mode through the real kubectl, against a stand-in API server (tests/manifests/kube_api.py) -----------

# The resource types of a cluster where helmfile has installed kube-prometheus-stack's CRDs.
INSTALLED = [
    *(("v1", kind) for kind in ("Service", "Pod", "Namespace", "ConfigMap")),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    *(("monitoring.coreos.com/v1", kind) for kind in ("Prometheus", "ServiceMonitor", "PodMonitor", "PrometheusRule")),
]
KEDA = ("keda.sh/v1alpha1", "ScaledObject")


def _kubectl_live(
    objects: list[Obj], kinds: list[tuple[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> tuple[int, str]:
    monkeypatch.setenv("HOME", str(tmp_path))  # kubectl's discovery cache
    with kube_api.serving(objects, kinds, tmp_path) as kubeconfig:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        code = doctor.main(["--live"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_live_through_kubectl_walks_the_scaled_object(
    live: list[Obj], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _kubectl_live(live, [*INSTALLED, KEDA], tmp_path, monkeypatch, capsys)
    assert code == 0, out
    scaled = one(live, "ScaledObject")["metadata"]
    assert f"ScaledObject {scaled['namespace']}/{scaled['name']}" in out
    assert "ok     scale-target" in out and "ok     prometheus-server" in out, out


def test_live_through_kubectl_a_scaled_object_without_its_deployment_is_broken(
    live: list[Obj], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = [o for o in live if o["kind"] != "Deployment"]
    code, out = _kubectl_live(objects, [*INSTALLED, KEDA], tmp_path, monkeypatch, capsys)
    assert code == 1, out
    assert _broken_keys(out) == {"scale-target"}, out


def test_live_through_kubectl_a_cluster_without_keda_is_walked_without_it(
    live: list[Obj], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = [o for o in live if o["kind"] != "ScaledObject"]
    code, out = _kubectl_live(objects, INSTALLED, tmp_path, monkeypatch, capsys)
    assert code == 0, out
    assert "(no scaledobjects.keda.sh: its CRD is not installed)" in out
    assert "scale-target" not in out and "ok     pods-ready" in out
