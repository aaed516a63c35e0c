"""What a walk produces and reads: the hops of one chain (Report), the objects walked (Cluster), and how a hop
names ports and pods in its line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from declarations import chart
from doctor import discovery as d
from doctor.discovery import Obj, PodView, Verdict

# The label every EndpointSlice carries naming its Service.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Hop:
    key: str  # stable name of the hop, e.g. "port"
    ok: bool
    text: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok    " if self.ok else "BROKEN"
        return f"  {mark} {self.key:<20} {self.text}" + (f". Fix: {self.fix}." if self.fix else "")


@dataclass
class Report:
    subject: str
    hops: list[Hop] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(h.ok for h in self.hops)

    def add(self, key: str, verdict: Verdict) -> bool:
        self.hops.append(Hop(key, verdict.ok, verdict.why, verdict.fix))
        return verdict.ok


@dataclass
class Cluster:
    """Everything a walk reads: the objects, the Prometheus object(s), the Grafana sidecar's selection."""

    objects: list[Obj]
    prometheuses: list[Obj]
    sidecar: dict[str, Any] | None
    live: bool
    origin: str
    # The Services in front of the Prometheus pods a ScaledObject may query: live, the cluster's own Services
    # (among `objects`); offline, those the chart renders (declarations.autoscaling.chart_services).
    prometheus_services: list[Obj] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pods = d.pod_views(self.objects, self.live)
        self.policies = self.of_kind("NetworkPolicy")

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o.get("kind") == kind]

    def ns_labels(self, namespace: str) -> dict[str, str]:
        return d.namespace_labels(namespace, self.objects)

    def prometheus_pod_labels(self, prometheus: Obj) -> dict[str, str]:
        """Live, the labels its pods really carry; offline, those the operator gives them."""
        name, namespace = prometheus["metadata"]["name"], prometheus["metadata"].get("namespace")
        for pod in self.of_kind("Pod"):
            labels = pod["metadata"].get("labels") or {}
            if pod["metadata"].get("namespace") == namespace and labels.get("operator.prometheus.io/name") == name:
                return dict(labels)
        return chart.prometheus_pod_labels(prometheus)


@dataclass(frozen=True)
class Target:
    """One pod port an endpoint reaches: through a Service port, in a set of pods, on a container's port."""

    service: Obj
    service_port: Obj
    pod: PodView
    container: Obj
    port: Obj


def target_port(port: Obj) -> int | str:
    """A Service port's targetPort; absent, it is the port's own number."""
    return port.get("targetPort", port.get("port"))


def show_port(port: Obj) -> str:
    return f"{port['name']} ({port.get('containerPort')})" if port.get("name") else str(port.get("containerPort"))


def show_views(pods: Iterable[PodView]) -> str:
    seen = list(dict.fromkeys(p.source for p in pods))
    return ", ".join(seen[:4]) + (f" and {len(seen) - 4} more" if len(seen) > 4 else "")
