"""KEDA's ScaledObject (manifests/scaledobject.yaml) read as the autoscaler reads it: its Prometheus trigger (the
server it asks, the query, the per-pod threshold), and the replica count the HPA KEDA makes would choose.

KEDA hands each trigger's value to a HorizontalPodAutoscaler as an external metric. For a trigger of metricType
AverageValue the HPA divides the value by the threshold: desired = ceil(value / threshold), then clamps the
result to minReplicaCount..maxReplicaCount; with several triggers it takes the largest. (The HPA also ignores a
change within 10 % of the current count; a fresh reading, as here, has no current count to compare with.)
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

from declarations.manifests import Obj
from declarations.selectors import Labels

# KEDA's default when a ScaledObject leaves the bounds out (keda.sh/v1alpha1).
DEFAULT_MIN_REPLICAS = 0
DEFAULT_MAX_REPLICAS = 100


@dataclass(frozen=True)
class PrometheusTrigger:
    """One `type: prometheus` trigger of a ScaledObject."""

    server_address: str
    query: str
    threshold: float
    metric_type: str

    @property
    def host_port(self) -> tuple[str, int]:
        url = urllib.parse.urlsplit(self.server_address)
        return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)

    def service(self) -> tuple[str, str | None]:
        """(Service name, namespace or None) the server address names through cluster DNS:
        `<svc>.<ns>.svc[.<cluster domain>]`, `<svc>.<ns>` or a bare `<svc>` (the ScaledObject's own namespace)."""
        host, _ = self.host_port
        parts = host.split(".")
        if len(parts) == 1:
            return parts[0], None
        if len(parts) == 2 or parts[2] == "svc":
            return parts[0], parts[1]
        return host, None


def prometheus_triggers(scaled: Obj) -> list[PrometheusTrigger]:
    triggers = []
    for trigger in (scaled.get("spec") or {}).get("triggers") or []:
        if trigger.get("type") != "prometheus":
            continue
        meta = trigger.get("metadata") or {}
        triggers.append(
            PrometheusTrigger(
                server_address=str(meta.get("serverAddress", "")),
                query=str(meta.get("query", "")),
                threshold=float(meta.get("threshold", "nan")),
                metric_type=str(trigger.get("metricType") or "AverageValue"),
            )
        )
    return triggers


def replica_bounds(scaled: Obj) -> tuple[int, int]:
    spec = scaled.get("spec") or {}
    return int(spec.get("minReplicaCount", DEFAULT_MIN_REPLICAS)), int(
        spec.get("maxReplicaCount", DEFAULT_MAX_REPLICAS)
    )


def desired_replicas(value: float, threshold: float, bounds: tuple[int, int]) -> int:
    """What the HPA makes of one AverageValue trigger: ceil(value / threshold), clamped to the bounds."""
    low, high = bounds
    if not (threshold > 0 and math.isfinite(value)):
        raise ValueError(f"cannot scale on value {value} with threshold {threshold}")
    return max(low, min(high, math.ceil(max(value, 0.0) / threshold)))


def recorded_names(objects: Iterable[Obj]) -> set[str]:
    """Names the PrometheusRules among `objects` record."""
    return {
        rule["record"]
        for obj in objects
        if obj.get("kind") == "PrometheusRule"
        for group in (obj.get("spec") or {}).get("groups") or []
        for rule in group.get("rules") or []
        if "record" in rule
    }


# kube-prometheus-stack's `prometheus.service.port` default, for when the chart cannot be rendered.
CHART_PROMETHEUS_PORT = 9090


def chart_services(rendered: list[Obj] | None, prometheus: Obj, pod_labels: Labels) -> list[Obj]:
    """The Services the chart deploys (offline: from its render); without a render, the one it puts in front
    of the Prometheus object: same name and namespace, selecting its pods, on the chart's default port."""
    if rendered is not None:
        return [o for o in rendered if o.get("kind") == "Service"]
    keys = ("app.kubernetes.io/name", "operator.prometheus.io/name")
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": dict(prometheus["metadata"]),
            "spec": {"selector": {k: pod_labels[k] for k in keys}, "ports": [{"port": CHART_PROMETHEUS_PORT}]},
        }
    ]
