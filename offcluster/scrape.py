"""ServiceMonitors turned into Prometheus scrape jobs, the way prometheus-operator turns them.

The operator discovers Services through Kubernetes service discovery and relabels the discovered
`__meta_kubernetes_*` labels into `job`, `namespace`, `service`, `pod`, `container` and `endpoint`.
Without a cluster there is nothing to discover, so each target is written as a static target that
carries the same meta labels a cluster would give it, and the job keeps the operator's relabelling:
the labels Prometheus ends up with are produced by the same rules, not typed in here.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from offcluster.manifests import Obj, RenderError, of_kind


@dataclass(frozen=True)
class Target:
    """One scrape target as a cluster would discover it: a container port behind a Service port."""

    job_name: str
    namespace: str
    service: Obj
    service_port: Obj
    deployment: Obj
    container: Obj
    container_port: int
    endpoint: Obj

    @property
    def pod_name(self) -> str:
        # Pods are named after their ReplicaSet in a cluster; locally there is one "pod" on this host.
        return f"{self.deployment['metadata']['name']}-local-{socket.gethostname().split('.')[0]}"


def seconds(duration: str) -> float:
    """A Prometheus duration such as `15s`, `1m30s` or `2h`, in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * units[u] for n, u in parts)


def _label_name(key: str) -> str:
    # Kubernetes SD sanitises label keys the same way: every character outside [a-zA-Z0-9_] becomes "_".
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def _matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _namespaces(monitor: Obj) -> set[str] | None:
    """The namespaces a ServiceMonitor looks in; None means all."""
    selector = monitor["spec"].get("namespaceSelector") or {}
    if selector.get("any"):
        return None
    return set(selector.get("matchNames") or [monitor["metadata"]["namespace"]])


def targets(objects: Iterable[Obj]) -> list[Target]:
    """Every (ServiceMonitor endpoint, Service, container port) the operator would scrape."""
    objects = list(objects)
    services = of_kind(objects, "Service")
    deployments = of_kind(objects, "Deployment")
    found: list[Target] = []
    for monitor in of_kind(objects, "ServiceMonitor"):
        ns, name = monitor["metadata"]["namespace"], monitor["metadata"]["name"]
        namespaces = _namespaces(monitor)
        selected = [
            s
            for s in services
            if (namespaces is None or s["metadata"]["namespace"] in namespaces)
            and _matches(monitor["spec"]["selector"], s["metadata"].get("labels") or {})
        ]
        if not selected:
            raise RenderError(
                f"ServiceMonitor {ns}/{name} selects no Service: make spec.selector match a Service's labels "
                f"in {sorted(namespaces) if namespaces else 'any namespace'}"
            )
        for index, endpoint in enumerate(monitor["spec"]["endpoints"]):
            for service in selected:
                found.append(_resolve(f"serviceMonitor/{ns}/{name}/{index}", monitor, endpoint, service, deployments))
    return found


def _resolve(job: str, monitor: Obj, endpoint: Obj, service: Obj, deployments: list[Obj]) -> Target:
    port_name = endpoint.get("port")
    if not port_name:
        raise RenderError(f"{job}: the endpoint must name a Service port (`port: <name>`), not a number")
    service_port = next((p for p in service["spec"]["ports"] if p.get("name") == port_name), None)
    if service_port is None:
        raise RenderError(f"{job}: Service {service['metadata']['name']} has no port named {port_name!r}")
    target_port = service_port.get("targetPort", service_port["port"])
    pods = [
        d
        for d in deployments
        if d["metadata"]["namespace"] == service["metadata"]["namespace"]
        and _matches({"matchLabels": service["spec"]["selector"]}, d["spec"]["template"]["metadata"]["labels"])
    ]
    if not pods:
        raise RenderError(f"{job}: Service {service['metadata']['name']} selects no Deployment's pods")
    for deployment in pods:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for port in container.get("ports") or []:
                if target_port in (port.get("name"), port["containerPort"]):
                    return Target(
                        job, service["metadata"]["namespace"], service, service_port, deployment, container,
                        port["containerPort"], endpoint,
                    )  # fmt: skip
    raise RenderError(f"{job}: no container port matches targetPort {target_port!r} of port {port_name!r}")


def _relabel(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A ServiceMonitor relabeling (camelCase) as a Prometheus relabel_config (snake_case)."""
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    out = {names.get(k, k): v for k, v in rule.items()}
    if "action" in out:
        out["action"] = out["action"].lower()
    return out


def meta_labels(target: Target) -> dict[str, str]:
    """The `__meta_kubernetes_*` labels that EndpointSlice discovery gives this target in a cluster."""
    labels = {
        "__meta_kubernetes_namespace": target.namespace,
        "__meta_kubernetes_service_name": target.service["metadata"]["name"],
        "__meta_kubernetes_endpointslice_port_name": target.service_port["name"],
        "__meta_kubernetes_endpointslice_address_target_kind": "Pod",
        "__meta_kubernetes_endpointslice_address_target_name": target.pod_name,
        "__meta_kubernetes_pod_name": target.pod_name,
        "__meta_kubernetes_pod_container_name": target.container["name"],
        "__meta_kubernetes_pod_container_port_name": target.service_port["name"],
        "__meta_kubernetes_pod_phase": "Running",
    }
    for key, value in (target.service["metadata"].get("labels") or {}).items():
        labels[f"__meta_kubernetes_service_label_{_label_name(key)}"] = value
        labels[f"__meta_kubernetes_service_labelpresent_{_label_name(key)}"] = "true"
    return labels


def operator_relabelings(monitor_selector: Mapping[str, Any], target: Target, job_label: str | None) -> list[dict]:
    """The relabelling prometheus-operator generates for a ServiceMonitor endpoint (EndpointSlice role)."""
    rules: list[dict[str, Any]] = [{"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}]
    for key, value in (monitor_selector.get("matchLabels") or {}).items():
        name = _label_name(key)
        rules.append(
            {
                "action": "keep",
                "source_labels": [
                    f"__meta_kubernetes_service_label_{name}",
                    f"__meta_kubernetes_service_labelpresent_{name}",
                ],
                "regex": f"({re.escape(value)});true",
            }
        )
    slice_ = "__meta_kubernetes_endpointslice"
    rules += [
        {"action": "keep", "source_labels": [f"{slice_}_port_name"], "regex": target.endpoint["port"]},
        {
            "source_labels": [f"{slice_}_address_target_kind", f"{slice_}_address_target_name"],
            "separator": ";",
            "regex": "Pod;(.*)",
            "replacement": "${1}",
            "target_label": "pod",
        },
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job", "replacement": "${1}"},
    ]
    if job_label:
        rules.append(
            {
                "source_labels": [f"__meta_kubernetes_service_label_{_label_name(job_label)}"],
                "target_label": "job",
                "regex": "(.+)",
                "replacement": "${1}",
            }
        )
    rules.append({"target_label": "endpoint", "replacement": target.endpoint["port"]})
    rules += [_relabel(r) for r in target.endpoint.get("relabelings") or []]
    return rules


def scrape_configs(
    objects: Iterable[Obj],
    host: str = "127.0.0.1",
    port_map: Mapping[int, int] | None = None,
    interval: str | None = None,
) -> list[dict[str, Any]]:
    """One Prometheus scrape job per ServiceMonitor endpoint.

    `port_map` maps a container port to the local port its process listens on (tests run on free ports);
    `interval` overrides the declared one (tests compress time). Everything else comes from the manifests.
    """
    objects = list(objects)
    monitors = {(m["metadata"]["namespace"], m["metadata"]["name"]): m for m in of_kind(objects, "ServiceMonitor")}
    jobs: dict[str, dict[str, Any]] = {}
    for target in targets(objects):
        ns, name = target.job_name.split("/")[1:3]
        monitor = monitors[(ns, name)]
        endpoint = target.endpoint
        port = (port_map or {}).get(target.container_port, target.container_port)
        job = jobs.setdefault(
            target.job_name,
            {
                "job_name": target.job_name,
                "honor_labels": bool(endpoint.get("honorLabels", False)),
                "scrape_interval": interval or endpoint.get("interval", "30s"),
                "scrape_timeout": endpoint.get("scrapeTimeout", "10s"),
                "metrics_path": endpoint.get("path", "/metrics"),
                "scheme": endpoint.get("scheme", "http"),
                "static_configs": [],
                "relabel_configs": operator_relabelings(
                    monitor["spec"]["selector"], target, monitor["spec"].get("jobLabel")
                ),
                "metric_relabel_configs": [_relabel(r) for r in endpoint.get("metricRelabelings") or []],
            },
        )
        if interval and seconds(interval) < seconds(job["scrape_timeout"]):
            # Prometheus refuses a timeout longer than the interval.
            job["scrape_timeout"] = interval
        job["static_configs"].append({"targets": [f"{host}:{port}"], "labels": meta_labels(target)})
    return list(jobs.values())
