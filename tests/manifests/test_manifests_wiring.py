"""Cross-references that a cluster does not validate: a mismatch is accepted and then nothing happens
(no target, no endpoints, no dashboard, a probe that kills healthy pods, a policy that blinds Prometheus)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from declarations import chart
from declarations.durations import seconds
from declarations.manifests import CANARY, render
from declarations.selectors import selector_matches
from tests.manifests.deploy_spec import (
    APP_NAMESPACE,
    MONITORING_NAMESPACE,
    Obj,
    graceful_timeout,
    master_paths,
    of_kind,
    one,
    served_get_paths,
)
from tests.manifests.kube_logic import (
    ingress_allowed,
    namespace_labels,
    prometheus_selects,
    sidecar_sees,
)

# Routes the app serves: liveness must not depend on the model, readiness must.
LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
# The label that admits a pod to the app port (manifests/networkpolicy.yaml, docs/cluster.md).
CLIENT_LABEL = "wine-classifier/client"


def _pod(objects: list[Obj]) -> dict[str, Any]:
    return one(objects, "Deployment")["spec"]["template"]


def _container(objects: list[Obj]) -> dict[str, Any]:
    containers = _pod(objects)["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def _container_ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


# ---- Service and ServiceMonitor ---------------------------------------------------------------------------


def test_service_selects_the_deployments_pods(base_objects: list[Obj]) -> None:
    service = one(base_objects, "Service")
    assert selector_matches({"matchLabels": service["spec"]["selector"]}, _pod(base_objects)["metadata"]["labels"])


def test_servicemonitor_selects_the_service_in_its_namespace(base_objects: list[Obj]) -> None:
    monitor, service = one(base_objects, "ServiceMonitor"), one(base_objects, "Service")
    assert selector_matches(monitor["spec"]["selector"], service["metadata"]["labels"])
    namespaces = monitor["spec"].get("namespaceSelector") or {}
    if not namespaces.get("any"):
        # Without a namespaceSelector the operator looks in the ServiceMonitor's own namespace only.
        allowed = namespaces.get("matchNames") or [monitor["metadata"]["namespace"]]
        assert service["metadata"]["namespace"] in allowed


def test_servicemonitor_endpoint_names_a_service_port_that_names_a_container_port(base_objects: list[Obj]) -> None:
    monitor, service = one(base_objects, "ServiceMonitor"), one(base_objects, "Service")
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    container = _container(base_objects)
    env = _env(container)
    for endpoint in monitor["spec"]["endpoints"]:
        # By name only: a number or targetPort breaks as soon as the port changes.
        assert "targetPort" not in endpoint
        assert isinstance(endpoint.get("port"), str), endpoint
        assert endpoint["port"] in service_ports, f"no Service port named {endpoint['port']!r}"
        target = service_ports[endpoint["port"]]["targetPort"]
        assert isinstance(target, str), f"targetPort {target!r} must be a container port name"
        assert _container_ports(container)[target] == int(env["METRICS_PORT"])
        assert endpoint["path"] == "/metrics"
        assert endpoint.get("interval") and endpoint.get("scrapeTimeout")


def test_scrape_timeout_fits_in_the_interval(base_objects: list[Obj]) -> None:
    # Prometheus rejects the whole scrape config when a timeout exceeds its interval.
    for endpoint in one(base_objects, "ServiceMonitor")["spec"]["endpoints"]:
        assert seconds(endpoint["scrapeTimeout"]) <= seconds(endpoint["interval"])


def test_every_service_port_reaches_a_named_container_port(base_objects: list[Obj]) -> None:
    service = one(base_objects, "Service")
    container = _container(base_objects)
    ports = _container_ports(container)
    env = _env(container)
    assert {"http", "metrics"} <= set(ports)
    assert ports["http"] == int(env["PORT"]) and ports["metrics"] == int(env["METRICS_PORT"])
    for port in service["spec"]["ports"]:
        assert isinstance(port["targetPort"], str) and port["targetPort"] in ports, port


# ---- probes and lifecycle ---------------------------------------------------------------------------------


def test_the_probe_paths_are_routes_of_the_app() -> None:
    served = served_get_paths()
    # The app port keeps its /healthz for users and tools; the liveness probe asks the master's.
    assert {LIVENESS_PATH, READINESS_PATH} <= served, f"app/routes.py serves {sorted(served)}"
    assert master_paths() == {"/metrics", LIVENESS_PATH}


def test_probes_hit_the_right_process(base_objects: list[Obj]) -> None:
    """Readiness and start-up ask the workers on PORT (they hold the model); liveness asks the master on
    METRICS_PORT, which clients of the app port cannot occupy (docs/reliability.md, "Liveness")."""
    container = _container(base_objects)
    ports = _container_ports(container)
    env = _env(container)
    expected = {
        "livenessProbe": (LIVENESS_PATH, "METRICS_PORT"),
        "readinessProbe": (READINESS_PATH, "PORT"),
        "startupProbe": (READINESS_PATH, "PORT"),
    }
    for probe_name, (path, port_variable) in expected.items():
        probe = container.get(probe_name)
        assert probe, f"no {probe_name}"
        http = probe["httpGet"]
        assert http["path"] == path, f"{probe_name} hits {http['path']}, not {path}"
        assert http["port"] in ports, f"{probe_name} port {http['port']!r} is not a named container port"
        assert ports[http["port"]] == int(env[port_variable]), f"{probe_name} is not on {port_variable}"


def test_the_serve_command_is_the_images(base_objects: list[Obj]) -> None:
    container = _container(base_objects)
    assert "command" not in container and "args" not in container, "the image's CMD is THE command"


def test_termination_grace_covers_graceful_shutdown(base_objects: list[Obj]) -> None:
    pod = _pod(base_objects)["spec"]
    pre_stop = _container(base_objects).get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert pod["terminationGracePeriodSeconds"] >= graceful_timeout() + pre_stop


def test_multiprocess_dir_is_a_memory_emptydir(base_objects: list[Obj]) -> None:
    pod = _pod(base_objects)["spec"]
    container = _container(base_objects)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    directory = _env(container)["PROMETHEUS_MULTIPROC_DIR"]
    assert directory in mounts, "PROMETHEUS_MULTIPROC_DIR is not a mounted volume (the root fs is read-only)"
    assert volumes[mounts[directory]]["emptyDir"].get("medium") == "Memory"
    assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]]


# ---- kube-prometheus-stack selection ----------------------------------------------------------------------


# Which Prometheus selector picks up each monitoring kind.
SELECTOR_OF = {"ServiceMonitor": "serviceMonitor", "PodMonitor": "podMonitor", "PrometheusRule": "rule"}


@pytest.mark.parametrize("tree", ["manifests", "canary"])
def test_the_rendered_prometheus_selects_our_monitoring_objects(
    tree: str, base_objects: list[Obj], chart_prometheus: Obj
) -> None:
    """The Prometheus object Helm renders from helmfile's values, its selectors applied to `kubectl kustomize`."""
    objects = base_objects if tree == "manifests" else render(CANARY)
    spec = chart_prometheus["spec"]
    print(
        f"\n{tree}: serviceMonitorSelector {spec.get('serviceMonitorSelector')}, "
        f"ruleSelector {spec.get('ruleSelector')}, namespace selectors "
        f"{spec.get('serviceMonitorNamespaceSelector')} / {spec.get('ruleNamespaceSelector')}"
    )
    monitoring = [o for o in objects if o["kind"] in SELECTOR_OF]
    assert {o["kind"] for o in monitoring} >= {"ServiceMonitor", "PrometheusRule"}
    for obj in monitoring:
        ns = namespace_labels(obj["metadata"]["namespace"], objects)
        selected, why = prometheus_selects(obj, chart_prometheus, SELECTOR_OF[obj["kind"]], ns)
        assert selected, f"{tree}: {obj['kind']}/{obj['metadata']['name']} is not discovered: {why}"


@pytest.mark.parametrize(
    ("spec", "kind", "expected"),
    [
        (
            {"serviceMonitorSelectorNilUsesHelmValues": True, "serviceMonitorSelector": {}},
            "serviceMonitor",
            {"matchLabels": {"release": "rel"}},
        ),
        ({"serviceMonitorSelectorNilUsesHelmValues": False, "serviceMonitorSelector": {}}, "serviceMonitor", {}),
        ({"serviceMonitorSelectorNilUsesHelmValues": False}, "serviceMonitor", {}),
        (
            {"serviceMonitorSelectorNilUsesHelmValues": True, "serviceMonitorSelector": {"matchLabels": {"a": "b"}}},
            "serviceMonitor",
            {"matchLabels": {"a": "b"}},
        ),
        ({"ruleSelectorNilUsesHelmValues": False, "ruleSelector": {}}, "rule", {}),
        ({"ruleSelectorNilUsesHelmValues": False}, "rule", None),
        ({"ruleSelectorNilUsesHelmValues": True}, "rule", {"matchLabels": {"release": "rel"}}),
    ],
)
def test_chart_selector_rule(spec: dict[str, Any], kind: str, expected: Any) -> None:
    assert chart.chart_object_selector(spec, kind, "rel") == expected


def test_the_selection_rule_tells_labels_and_namespaces_apart() -> None:
    """The chart's default, independent of our values: the release label decides, namespaces do not."""
    default = {
        "serviceMonitorSelectorNilUsesHelmValues": True,
        "serviceMonitorSelector": {},
        "serviceMonitorNamespaceSelector": {},
    }
    ns = namespace_labels(APP_NAMESPACE)

    def monitor(release: str) -> Obj:
        return {"metadata": {"name": "m", "namespace": APP_NAMESPACE, "labels": {"release": release}}}

    def prometheus(values: dict[str, Any]) -> Obj:
        spec = {"serviceMonitorNamespaceSelector": values.get("serviceMonitorNamespaceSelector") or {}}
        selector = chart.chart_object_selector(values, "serviceMonitor", "rel")
        return {"spec": spec if selector is None else {**spec, "serviceMonitorSelector": selector}}

    # The classic copy-paste from another setup: `release: prometheus`.
    assert not prometheus_selects(monitor("prometheus"), prometheus(default), "serviceMonitor", ns)[0]
    assert prometheus_selects(monitor("rel"), prometheus(default), "serviceMonitor", ns)[0]
    everything = {**default, "serviceMonitorSelectorNilUsesHelmValues": False}
    assert prometheus_selects(monitor("prometheus"), prometheus(everything), "serviceMonitor", ns)[0]
    restricted = {**default, "serviceMonitorNamespaceSelector": {"matchLabels": {"team": "observability"}}}
    assert not prometheus_selects(monitor("rel"), prometheus(restricted), "serviceMonitor", ns)[0]


# ---- Grafana dashboard sidecar ----------------------------------------------------------------------------


def _dashboards(objects: list[Obj]) -> list[Obj]:
    return [c for c in of_kind(objects, "ConfigMap") if any(k.endswith(".json") for k in c.get("data", {}))]


def test_the_dashboard_configmap_is_seen_by_the_grafana_sidecar(
    base_objects: list[Obj], chart_objects: list[Obj]
) -> None:
    sidecar = chart.grafana_sidecar(chart_objects)
    print(f"\ngrafana sidecar {sidecar}")
    dashboards = _dashboards(base_objects)
    assert dashboards, "no ConfigMap carries a dashboard (.json key)"
    for configmap in dashboards:
        seen, why = sidecar_sees(sidecar, configmap)
        assert seen, f"ConfigMap {configmap['metadata']['name']}: {why}"
        for key, text in configmap["data"].items():
            assert isinstance(json.loads(text), dict), f"{key} is not a JSON object"


def test_the_sidecar_rule_rejects_what_grafana_would_not_load() -> None:
    configmap = {"metadata": {"name": "d", "namespace": APP_NAMESPACE, "labels": {"grafana_dashboard": "1"}}}
    on = {"label": "grafana_dashboard", "label_value": "1", "namespaces": "ALL"}
    assert sidecar_sees(on, configmap)[0]
    # The grafana chart's own default: only Grafana's namespace.
    assert not sidecar_sees({**on, "namespaces": [MONITORING_NAMESPACE]}, configmap)[0]
    assert sidecar_sees({**on, "namespaces": [MONITORING_NAMESPACE, APP_NAMESPACE]}, configmap)[0]
    assert sidecar_sees({**on, "label_value": None}, configmap)[0]
    assert not sidecar_sees({**on, "label_value": "true"}, configmap)[0]
    assert not sidecar_sees({**on, "label": "dashboard"}, configmap)[0]
    assert not sidecar_sees({**on, "enabled": False}, configmap)[0]
    assert not sidecar_sees({**on, "resource": "secret"}, configmap)[0]


# ---- NetworkPolicy ----------------------------------------------------------------------------------------


def _reachable(objects: list[Obj], port_name: str, src_ns: str, src_labels: dict[str, str]) -> bool:
    pod_labels = _pod(objects)["metadata"]["labels"]
    port = _container_ports(_container(objects))[port_name]
    return ingress_allowed(
        of_kind(objects, "NetworkPolicy"),
        APP_NAMESPACE,
        pod_labels,
        port,
        port_name,
        src_ns,
        namespace_labels(src_ns),
        src_labels,
    )


def test_networkpolicy_selects_the_apps_pods(base_objects: list[Obj]) -> None:
    policy = one(base_objects, "NetworkPolicy")
    assert selector_matches(policy["spec"]["podSelector"], _pod(base_objects)["metadata"]["labels"])
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}


def test_networkpolicy_lets_the_charts_prometheus_scrape(
    base_objects: list[Obj], chart_prometheus: Obj, release: dict[str, Any]
) -> None:
    prometheus = chart.prometheus_pod_labels(chart_prometheus)
    assert _reachable(base_objects, "metrics", release["namespace"], prometheus)


def test_networkpolicy_keeps_everyone_else_off_the_metrics_port(
    base_objects: list[Obj], chart_prometheus: Obj, release: dict[str, Any]
) -> None:
    prometheus = chart.prometheus_pod_labels(chart_prometheus)
    grafana = {"app.kubernetes.io/name": "grafana"}
    assert not _reachable(base_objects, "metrics", release["namespace"], grafana)
    assert not _reachable(base_objects, "metrics", APP_NAMESPACE, {"app.kubernetes.io/name": "wine-classifier"})
    # Same labels, wrong namespace: a look-alike pod elsewhere does not get in.
    assert not _reachable(base_objects, "metrics", "default", prometheus)


def test_networkpolicy_lets_labelled_clients_reach_the_app_port(base_objects: list[Obj]) -> None:
    client = {CLIENT_LABEL: "true", "run": "locust"}
    for namespace in ("default", APP_NAMESPACE, "loadtest"):
        assert _reachable(base_objects, "http", namespace, client), namespace


def test_networkpolicy_keeps_unlabelled_pods_off_the_app_port(
    base_objects: list[Obj], chart_prometheus: Obj, release: dict[str, Any]
) -> None:
    assert not _reachable(base_objects, "http", "default", {"run": "curl"})
    assert not _reachable(base_objects, "http", APP_NAMESPACE, {})
    assert not _reachable(base_objects, "http", "default", {CLIENT_LABEL: "false"})
    # Prometheus scrapes the metrics port only.
    assert not _reachable(base_objects, "http", release["namespace"], chart.prometheus_pod_labels(chart_prometheus))
    # A client of the app port gets nothing on the metrics port.
    assert not _reachable(base_objects, "metrics", "default", {CLIENT_LABEL: "true"})


def test_networkpolicy_allows_no_egress_beyond_dns(base_objects: list[Obj]) -> None:
    for rule in one(base_objects, "NetworkPolicy")["spec"].get("egress") or []:
        ports = rule.get("ports")
        assert ports, f"egress rule {rule} opens every port"
        assert all(p.get("port") == 53 for p in ports), f"egress rule {rule} allows more than DNS"


# ---- Autoscaling (KEDA's ScaledObject, tests/manifests/test_scaledobject.py) and PDB -----------------------


def test_pdb_covers_the_pods_and_lets_a_drain_proceed(base_objects: list[Obj]) -> None:
    pdb, scaled = one(base_objects, "PodDisruptionBudget"), one(base_objects, "ScaledObject")
    assert selector_matches(pdb["spec"]["selector"], _pod(base_objects)["metadata"]["labels"])
    min_available = pdb["spec"]["minAvailable"]
    assert isinstance(min_available, int) and min_available < scaled["spec"]["minReplicaCount"], (
        "minAvailable must stay below the smallest replica count or no pod can ever be evicted"
    )


def test_workload_uses_its_own_service_account_without_a_token(base_objects: list[Obj]) -> None:
    account = one(base_objects, "ServiceAccount")
    pod = _pod(base_objects)["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False
    assert pod.get("automountServiceAccountToken", False) is False
