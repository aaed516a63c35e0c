"""The walks behind `python -m doctor`: for each monitoring object, its chain of hops in order.

A ServiceMonitor endpoint goes: a Prometheus selects it (labels, then namespace), its selector finds a
Service, the endpoint names a Service port, the Service selects pods, the port's targetPort is a container
port, the container has a readiness probe (live: the pods are ready, the EndpointSlice is not empty), the
NetworkPolicies admit the Prometheus pods. Each hop adds one line to a Report and hands on what passed; a hop
with nothing to hand on ends the walk there. The rule of each hop lives in doctor.discovery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from declarations.selectors import selector_matches, service_selects
from doctor import discovery as d
from doctor.autoscaling import walk_scaled_object
from doctor.discovery import Obj, PodView, Verdict, ref, show_labels, show_selector
from doctor.reachability import endpoint_slices, network_policy, readiness
from doctor.report import SERVICE_NAME_LABEL, Cluster, Report, Target, show_port, show_views, target_port

# ---- ServiceMonitor ----------------------------------------------------------------------------------------


def _selection(report: Report, cluster: Cluster, obj: Obj, prefix: str) -> list[Obj]:
    """Two hops: a Prometheus selects `obj` by labels, and searches its namespace. Returns the Prometheus
    objects that load it (all of them when none does, so later hops still have a Prometheus to check)."""
    if not cluster.prometheuses:
        report.add(
            f"{prefix}-selector",
            Verdict(False, "no Prometheus object found", "install kube-prometheus-stack (helmfile sync)"),
        )
        return []
    ns_labels = cluster.ns_labels(obj["metadata"].get("namespace", "default"))
    verdicts = [(p, *d.prometheus_selects(p, obj, ns_labels)) for p in cluster.prometheuses]
    loading = [p for p, by_labels, by_ns in verdicts if by_labels.ok and by_ns.ok]
    # Report a Prometheus that loads it; else the closest one: its label selector matches, else the first.
    _, by_labels, by_ns = next(
        (v for v in verdicts if v[1].ok and v[2].ok), next((v for v in verdicts if v[1].ok), verdicts[0])
    )
    report.add(f"{prefix}-selector", by_labels)
    report.add(f"{prefix}-namespace", by_ns)
    return loading or cluster.prometheuses


def walk_service_monitor(cluster: Cluster, monitor: Obj) -> list[Report]:
    """One report per endpoint of a ServiceMonitor."""
    endpoints = (monitor.get("spec") or {}).get("endpoints") or []
    if not endpoints:
        report = Report(f"{ref(monitor)}")
        report.add(
            "endpoint",
            Verdict(
                False, f"{ref(monitor)} has no spec.endpoints", "add an endpoint naming the Service's metrics port"
            ),
        )
        return [report]
    return [walk_endpoint(cluster, monitor, i, e) for i, e in enumerate(endpoints)]


def walk_endpoint(cluster: Cluster, monitor: Obj, index: int, endpoint: Obj) -> Report:
    named = endpoint.get("port") or endpoint.get("targetPort")
    report = Report(f"{ref(monitor)}, endpoint {index} (port {named})")
    prometheuses = _selection(report, cluster, monitor, "prometheus")
    services = _services(report, cluster, monitor)
    ports = _service_ports(report, services, index, endpoint) if services else []
    if not ports:
        return report
    if not any((s.get("spec") or {}).get("selector") for s, _ in ports):
        _selectorless(report, cluster, ports)
        return report
    chains = _pods(report, cluster, [(s, p) for s, p in ports if (s.get("spec") or {}).get("selector")])
    targets = _target_ports(report, chains) if chains else []
    if targets:
        readiness(report, cluster, targets)
        if cluster.live:
            endpoint_slices(report, cluster, ports)
        network_policy(report, cluster, prometheuses, [(t.pod, t.port) for t in targets])
    return report


def _services(report: Report, cluster: Cluster, monitor: Obj) -> list[Obj]:
    """The ServiceMonitor finds Services: its namespaceSelector, then its selector on the Services' labels."""
    selector = (monitor.get("spec") or {}).get("selector")
    namespaces = d.monitor_namespaces(monitor)
    where = "every namespace" if namespaces is None else "namespace " + ", ".join(namespaces)
    in_ns = [s for s in cluster.of_kind("Service") if d.in_namespaces(s, namespaces)]
    services = [
        s for s in in_ns if selector is not None and selector_matches(selector, s["metadata"].get("labels") or {})
    ]
    if not services:
        near = ", ".join(f"{ref(s)} ({show_labels(s['metadata'].get('labels') or {})})" for s in in_ns) or "none"
        report.add(
            "service",
            Verdict(
                False,
                f"spec.selector {show_selector(selector)} in {where} matches no Service (Services there: {near})",
                f"make spec.selector of {ref(monitor)} match the Service's metadata.labels (not its spec.selector), "
                "and spec.namespaceSelector.matchNames name the Service's namespace",
            ),
        )
        return []
    report.add(
        "service",
        Verdict(
            True, f"spec.selector {show_selector(selector)} in {where} matches " + ", ".join(ref(s) for s in services)
        ),
    )
    return services


def _service_ports(report: Report, services: list[Obj], index: int, endpoint: Obj) -> list[tuple[Obj, Obj]]:
    """The endpoint names a port of the Service: `port` a Service port's name, `targetPort` its targetPort."""
    named = endpoint.get("port") or endpoint.get("targetPort")
    ports: list[tuple[Obj, Obj]] = []
    for service in services:
        for port in (service.get("spec") or {}).get("ports") or []:
            by_name = "port" in endpoint and port.get("name") == endpoint["port"]
            by_target = (
                "port" not in endpoint and "targetPort" in endpoint and target_port(port) == endpoint["targetPort"]
            )
            if by_name or by_target:
                ports.append((service, port))
    if not ports:
        have = ", ".join(
            f"{p.get('name') or '<unnamed>'}→{target_port(p)}" for s in services for p in s["spec"].get("ports") or []
        )
        field_name = "port" if "port" in endpoint else "targetPort" if "targetPort" in endpoint else None
        all_ports = [p for s in services for p in s["spec"].get("ports") or []]
        fix = (
            f"set endpoints[{index}].port to the name of the Service's metrics port"
            if field_name
            else f"give endpoints[{index}] a port: the name of the Service's metrics port"
        )
        by_number = [p for p in all_ports if str(p.get("port")) == str(named) and p.get("name")]
        if field_name == "port" and by_number:
            fix = (
                f"endpoints[{index}].port takes a Service port's name, not its number: set it to {by_number[0]['name']}"
            )
        elif field_name == "port" and not all(p.get("name") for p in all_ports):
            fix = f"name the Service port and use that name in endpoints[{index}].port"
        report.add(
            "port",
            Verdict(
                False,
                f"endpoints[{index}].{field_name or 'port'} {named!r} names no port of "
                f"{', '.join(ref(s) for s in services)} (ports: {have})",
                fix,
            ),
        )
        return []
    report.add(
        "port",
        Verdict(
            True,
            f"endpoints[{index}] {named!r} is "
            + ", ".join(f"{ref(s)} port {p.get('name')} ({p.get('port')}→{target_port(p)})" for s, p in ports),
        ),
    )
    return ports


def _selectorless(report: Report, cluster: Cluster, ports: list[tuple[Obj, Obj]]) -> None:
    """A Service without a selector (the API server's `kubernetes`, the operator's kubelet Service) has its
    endpoints written by someone else: no pod hop applies, only what its EndpointSlices hold."""
    service = ports[0][0]
    if cluster.live:
        report.add(
            "pods",
            Verdict(
                True,
                f"{ref(service)} has no spec.selector: another controller writes its "
                "endpoints, so there are no pods to match",
            ),
        )
        endpoint_slices(report, cluster, ports)
        return
    # Offline, only the manifests themselves could fill it.
    name, namespace = service["metadata"]["name"], service["metadata"].get("namespace", "default")
    filled = [
        o
        for o in cluster.of_kind("Endpoints") + cluster.of_kind("EndpointSlice")
        if o["metadata"].get("namespace", "default") == namespace
        and name in (o["metadata"]["name"], (o["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL))
    ]
    found = f"{ref(filled[0])} lists its endpoints" if filled else "nothing in the manifests fills its endpoints"
    fix = f"give {ref(service)} a spec.selector: a subset of the pod template's metadata.labels"
    report.add(
        "pods", Verdict(bool(filled), f"{ref(service)} has no spec.selector, and {found}", "" if filled else fix)
    )


def _pods(report: Report, cluster: Cluster, ports: list[tuple[Obj, Obj]]) -> list[tuple[Obj, Obj, PodView]]:
    """The Service's selector matches pods: offline a workload's pod template, live the Pods."""
    chains: list[tuple[Obj, Obj, PodView]] = []
    for service, port in ports:
        chosen = (service.get("spec") or {}).get("selector")
        for pod in cluster.pods:
            if pod.namespace == service["metadata"].get("namespace", "default") and service_selects(chosen, pod.labels):
                chains.append((service, port, pod))
    if not chains:
        service = ports[0][0]
        chosen = (service.get("spec") or {}).get("selector")
        near = [p for p in cluster.pods if p.namespace == service["metadata"].get("namespace", "default")]
        seen = "; ".join(f"{p.source}: {show_labels(p.labels)}" for p in near[:3]) or "no pods in its namespace"
        what = "Pod" if cluster.live else "workload's pod template"
        report.add(
            "pods",
            Verdict(
                False,
                f"{ref(service)} spec.selector {show_labels(chosen or {}) if chosen else '<empty>'} matches no "
                f"{what} ({seen})",
                f"make spec.selector of {ref(service)} a subset of the pod template's metadata.labels",
            ),
        )
        return []
    report.add(
        "pods",
        Verdict(
            True,
            f"{ref(chains[0][0])} spec.selector {show_labels(chains[0][0]['spec']['selector'])} "
            "matches " + show_views(c[2] for c in chains),
        ),
    )
    return chains


def _target_ports(report: Report, chains: list[tuple[Obj, Obj, PodView]]) -> list[Target]:
    """The Service port's targetPort is a container port of those pods."""
    reached: list[Target] = []
    undeclared = False
    for service, port, pod in chains:
        found = d.container_port(pod, target_port(port))
        if found:
            reached.append(Target(service, port, pod, *found))
        elif isinstance(target_port(port), int) and pod.containers:
            # A number reaches the pod whether or not a container declares it; only a name must resolve.
            reached.append(Target(service, port, pod, pod.containers[0], {"containerPort": target_port(port)}))
            undeclared = True
    if not reached:
        _, port, pod = chains[0]
        declared = ", ".join(
            f"{p.get('name') or '<unnamed>'}={p.get('containerPort')}"
            for c in pod.containers
            for p in c.get("ports") or []
        )
        report.add(
            "target-port",
            Verdict(
                False,
                f"targetPort {target_port(port)!r} of port {port.get('name')} is no container port of {pod.source} "
                f"(container ports: {declared or 'none'})",
                f"set targetPort of the Service port {port.get('name')} to the name of the container port that serves "
                "/metrics",
            ),
        )
        return []
    first = reached[0]
    if undeclared:
        report.add(
            "target-port",
            Verdict(
                True,
                f"targetPort {target_port(first.service_port)} is declared by no "
                "container: traffic still reaches it, but the target gets no "
                "`container` label (name the container port to get one)",
            ),
        )
        return reached
    report.add(
        "target-port",
        Verdict(
            True,
            f"targetPort {target_port(first.service_port)!r} is container "
            f"{first.container['name']} port {show_port(first.port)} in " + show_views(t.pod for t in reached),
        ),
    )
    return reached


def walk_pod_monitor(cluster: Cluster, monitor: Obj) -> list[Report]:
    reports: list[Report] = []
    for index, endpoint in enumerate((monitor.get("spec") or {}).get("podMetricsEndpoints") or [{}]):
        named = endpoint.get("port") or endpoint.get("portNumber") or endpoint.get("targetPort")
        report = Report(f"{ref(monitor)}, podMetricsEndpoint {index} (port {named})")
        reports.append(report)
        prometheuses = _selection(report, cluster, monitor, "prometheus")
        selector = (monitor.get("spec") or {}).get("selector")
        namespaces = d.monitor_namespaces(monitor)
        pods = [
            p
            for p in cluster.pods
            if (namespaces is None or p.namespace in namespaces)
            and selector is not None
            and selector_matches(selector, p.labels)
        ]
        where = "every namespace" if namespaces is None else "namespace " + ", ".join(namespaces)
        if not report.add(
            "pods",
            Verdict(
                bool(pods),
                f"spec.selector {show_selector(selector)} in {where} matches "
                + (show_views(pods) if pods else "no pods"),
                "" if pods else f"make spec.selector of {ref(monitor)} match the pod template's metadata.labels",
            ),
        ):
            continue
        if named is None:
            report.add(
                "port",
                Verdict(
                    False,
                    f"podMetricsEndpoints[{index}] names no port",
                    f"set podMetricsEndpoints[{index}].port to the container port's name",
                ),
            )
            continue
        found = [(p, *hit) for p in pods if (hit := d.container_port(p, named))]
        if not report.add(
            "port",
            Verdict(
                bool(found),
                f"podMetricsEndpoints[{index}] {named!r} is "
                + (
                    f"container {found[0][1]['name']} port {show_port(found[0][2])}"
                    if found
                    else "no container port of " + show_views(pods)
                ),
                ""
                if found
                else f"set podMetricsEndpoints[{index}].port to the name of the container port serving /metrics",
            ),
        ):
            continue
        network_policy(report, cluster, prometheuses, [(p, cport) for p, _, cport in found])
    return reports


def walk_rule(cluster: Cluster, rule: Obj) -> Report:
    report = Report(ref(rule))
    _selection(report, cluster, rule, "rule")
    return report


def walk_dashboard(cluster: Cluster, configmap: Obj) -> Report:
    report = Report(f"{ref(configmap)} (Grafana dashboard)")
    if cluster.sidecar is None:
        report.add(
            "sidecar",
            Verdict(
                False, "no Grafana dashboard sidecar found", "enable grafana.sidecar.dashboards in the chart values"
            ),
        )
    else:
        report.add("sidecar", d.sidecar_sees(cluster.sidecar, configmap))
    return report


# ---- the whole check ----------------------------------------------------------------------------------------


def diagnose(cluster: Cluster, namespace: str | None = None) -> list[Report]:
    """Every report: ServiceMonitor and PodMonitor endpoints, PrometheusRules, ScaledObjects, dashboard
    ConfigMaps."""

    def mine(obj: Obj) -> bool:
        return namespace is None or obj["metadata"].get("namespace") == namespace

    reports: list[Report] = []
    walks: list[tuple[str, Callable[[Cluster, Obj], Any]]] = [
        ("ServiceMonitor", walk_service_monitor),
        ("PodMonitor", walk_pod_monitor),
        ("PrometheusRule", walk_rule),
        ("ScaledObject", walk_scaled_object),
    ]
    for kind, walk in walks:
        for obj in filter(mine, cluster.of_kind(kind)):
            found = walk(cluster, obj)
            reports.extend(found if isinstance(found, list) else [found])
    for configmap in filter(mine, cluster.of_kind("ConfigMap")):
        if any(str(key).endswith(".json") for key in configmap.get("data") or {}):
            reports.append(walk_dashboard(cluster, configmap))
    return reports
