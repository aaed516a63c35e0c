"""manifests/scaledobject.yaml is wired: it scales the rendered Deployment, asks the chart's Prometheus (as Helm
renders its Service) a query about this app's own series, and KEDA's HPA arithmetic gives sane counts."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from declarations import chart
from declarations.autoscaling import (
    chart_services,
    desired_replicas,
    prometheus_triggers,
    recorded_names,
    replica_bounds,
)
from declarations.selectors import selector_matches
from doctor.autoscaling import exported_names, prometheus_server, query_labels, query_metrics, scale_target
from tests.manifests.deploy_spec import ROOT, Obj, one

# The HPA the ScaledObject replaces had these bounds and this scale-down stabilisation.
REPLICAS = (2, 6)
SCALE_DOWN_STABILISATION_SECONDS = 300


def _served_post_paths() -> set[str]:
    """The paths app/routes.py registers for POST (`@api.post("/x")`), read without importing the app."""
    return set(re.findall(r'@api\.post\("([^"]+)"\)', (ROOT / "app" / "routes.py").read_text()))


def _scaled(base_objects: list[Obj]) -> Obj:
    return one(base_objects, "ScaledObject")


def test_it_scales_the_rendered_deployment(base_objects: list[Obj]) -> None:
    scaled, deployment = _scaled(base_objects), one(base_objects, "Deployment")
    target = scaled["spec"]["scaleTargetRef"]
    assert (target.get("apiVersion"), target.get("kind"), target["name"]) == (
        "apps/v1",
        "Deployment",
        deployment["metadata"]["name"],
    )
    # A ScaledObject only scales a target in its own namespace.
    assert scaled["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    low, high = replica_bounds(scaled)
    assert (low, high) == REPLICAS
    assert low <= deployment["spec"]["replicas"] <= high


def test_no_other_autoscaler_targets_the_deployment(base_objects: list[Obj]) -> None:
    """KEDA owns the HPA it makes; a second HPA on the same Deployment would undo its counts."""
    assert not [o for o in base_objects if o["kind"] == "HorizontalPodAutoscaler"]
    assert len([o for o in base_objects if o["kind"] == "ScaledObject"]) == 1


def test_scale_down_waits_as_the_hpa_did(base_objects: list[Obj]) -> None:
    behavior = _scaled(base_objects)["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == SCALE_DOWN_STABILISATION_SECONDS


def test_cpu_is_the_second_trigger_and_the_pods_request_cpu(base_objects: list[Obj]) -> None:
    scaled, deployment = _scaled(base_objects), one(base_objects, "Deployment")
    kinds = [t["type"] for t in scaled["spec"]["triggers"]]
    assert sorted(kinds) == ["cpu", "prometheus"]
    (cpu,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "cpu"]
    assert cpu["metricType"] == "Utilization" and 0 < int(cpu["metadata"]["value"]) <= 100
    # Utilization is a share of the request: a container without a CPU request makes the HPA fail.
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        assert container["resources"]["requests"]["cpu"]


def test_the_prometheus_trigger_asks_the_charts_prometheus_service(
    base_objects: list[Obj], chart_objects: list[Obj]
) -> None:
    (trigger,) = prometheus_triggers(_scaled(base_objects))
    name, namespace = trigger.service()
    assert namespace, f"{trigger.server_address}: name the namespace, KEDA's operator runs in another one"
    services = {(o["metadata"]["name"], o["metadata"]["namespace"]): o for o in chart_objects if o["kind"] == "Service"}
    assert (name, namespace) in services, f"the chart renders no Service {namespace}/{name}"
    service = services[(name, namespace)]
    # That Service fronts the Prometheus pods (not Alertmanager's or Grafana's), on the port asked.
    prometheus_pods = chart.prometheus_pod_labels(chart.prometheus(chart_objects))
    assert selector_matches({"matchLabels": service["spec"]["selector"]}, prometheus_pods)
    _, port = trigger.host_port
    assert port in {p["port"] for p in service["spec"]["ports"]} and port == 9090


def test_the_query_is_about_this_apps_own_series(base_objects: list[Obj]) -> None:
    """job and namespace are what prometheus-operator gives the app's series (the Service's name and
    namespace), and the route is one the app serves: a typo in either leaves the query empty and the HPA at
    its minimum."""
    (trigger,) = prometheus_triggers(_scaled(base_objects))
    service = one(base_objects, "Service")
    assert f'job="{service["metadata"]["name"]}"' in trigger.query
    assert f'namespace="{service["metadata"]["namespace"]}"' in trigger.query
    (route,) = re.findall(r'route="([^"]+)"', trigger.query)
    assert route in _served_post_paths(), f"the app serves no POST {route}"
    # One number for the whole Deployment: an aggregation without `by`, which AverageValue divides per pod.
    assert trigger.query.startswith("sum(") and " by " not in trigger.query
    assert trigger.metric_type == "AverageValue" and trigger.threshold > 0


def test_server_address_forms() -> None:
    def service(address: str) -> tuple[str, str | None]:
        scaled: dict[str, Any] = {
            "spec": {"triggers": [{"type": "prometheus", "metadata": {"serverAddress": address, "threshold": "1"}}]}
        }
        return prometheus_triggers(scaled)[0].service()

    assert service("http://p.monitoring.svc:9090") == ("p", "monitoring")
    assert service("http://p.monitoring.svc.cluster.local:9090") == ("p", "monitoring")
    assert service("http://p.monitoring:9090") == ("p", "monitoring")
    assert service("http://p:9090") == ("p", None)


@given(
    value=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    threshold=st.floats(min_value=0.1, max_value=1e4),
    low=st.integers(min_value=0, max_value=10),
    extra=st.integers(min_value=0, max_value=10),
)
def test_desired_replicas_is_the_hpa_formula_clamped(value: float, threshold: float, low: int, extra: int) -> None:
    high = low + extra
    replicas = desired_replicas(value, threshold, (low, high))
    assert low <= replicas <= high
    if low < replicas < high:
        # Enough pods that none carries more than the threshold, and one fewer would not be.
        assert value / replicas <= threshold * (1 + 1e-9)
        assert replicas == 1 or value / (replicas - 1) > threshold * (1 - 1e-9)


def test_desired_replicas_at_the_threshold_and_past_it() -> None:
    assert desired_replicas(0.0, 150, REPLICAS) == 2
    assert desired_replicas(300.0, 150, REPLICAS) == 2
    assert desired_replicas(301.0, 150, REPLICAS) == 3
    assert desired_replicas(10_000.0, 150, REPLICAS) == 6


# ---- the doctor's hops on the ScaledObject (offcluster.autoscaling) -----------------------------------------


def _hops(objects: list[Obj], chart_objects: list[Obj] | None) -> dict[str, Any]:
    scaled = one(objects, "ScaledObject")
    prometheus = chart.prometheus(chart_objects) if chart_objects is not None else chart.prometheus_from_values()
    pod_labels = chart.prometheus_pod_labels(prometheus)
    services = chart_services(chart_objects, prometheus, pod_labels)
    namespace = scaled["metadata"]["namespace"]
    (trigger,) = prometheus_triggers(scaled)
    return {
        "scale-target": scale_target(scaled, objects),
        "prometheus-server": prometheus_server(trigger, namespace, services, pod_labels),
        "query-metrics": query_metrics(trigger, exported_names() | recorded_names(objects)),
        "query-labels": query_labels(trigger, namespace, objects),
    }


@pytest.mark.parametrize("rendered", [True, False], ids=["chart render", "values fallback"])
def test_every_hop_passes_on_the_projects_manifests(base_objects, chart_objects, rendered: bool) -> None:
    hops = _hops(base_objects, chart_objects if rendered else None)
    assert all(v.ok for v in hops.values()), {k: v.why for k, v in hops.items() if not v.ok}


def _trigger_metadata(objects: list[Obj]) -> dict[str, Any]:
    return one(objects, "ScaledObject")["spec"]["triggers"][0]["metadata"]


@pytest.mark.parametrize(
    ("hop", "edit", "said"),
    [
        ("scale-target", lambda o: one(o, "ScaledObject")["spec"]["scaleTargetRef"].update(name="wine"), "wine"),
        (
            "prometheus-server",
            lambda o: _trigger_metadata(o).update(serverAddress="http://prometheus-operated.monitoring.svc:9090"),
            "no Service monitoring/prometheus-operated",
        ),
        (
            "prometheus-server",
            lambda o: _trigger_metadata(o).update(
                serverAddress="http://kube-prometheus-stack-alertmanager.monitoring.svc:9093"
            ),
            "kube-prometheus-stack-alertmanager",
        ),
        (
            "prometheus-server",
            lambda o: _trigger_metadata(o).update(serverAddress="http://kube-prometheus-stack-prometheus:9090"),
            "ml-serving/kube-prometheus-stack-prometheus",
        ),
        (
            "query-metrics",
            lambda o: _trigger_metadata(o).update(query=_trigger_metadata(o)["query"].replace("_total", "_count")),
            "http_requests_count",
        ),
        (
            "query-labels",
            lambda o: _trigger_metadata(o).update(query=_trigger_metadata(o)["query"].replace('job="', 'job="x')),
            'job="xwine-classifier"',
        ),
    ],
)
def test_a_broken_copy_is_diagnosed_at_its_hop(base_objects, chart_objects, hop: str, edit, said: str) -> None:
    objects = copy.deepcopy(base_objects)
    edit(objects)
    hops = _hops(objects, chart_objects)
    assert [k for k, v in hops.items() if not v.ok] == [hop], {k: v.why for k, v in hops.items()}
    assert said in hops[hop].why and hops[hop].fix
