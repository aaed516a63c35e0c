"""`python -m offcluster doctor`: why a ServiceMonitor yields no target, answered hop by hop.

    python -m offcluster doctor [DIR]                 # render DIR (a kustomization, default manifests/)
    python -m offcluster doctor --live                # the same walk on the cluster kubectl points at
    python -m offcluster doctor --from-json FILE      # ... on a saved `kubectl get ... -A -o json` list

For every ServiceMonitor (and PodMonitor) endpoint it walks the chain the operator, the API server and the
CNI follow, one line per hop, and names the fix of a broken one; then each PrometheusRule against the
Prometheus `ruleSelector`, and each dashboard ConfigMap against the Grafana sidecar. Offline, the Prometheus
object and the sidecar are the chart's as helmfile.yaml deploys them (offcluster.chart). Exit status: 0 when
every hop passed, 1 when one is broken, 2 when the input cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from offcluster import chart
from offcluster import discovery as d
from offcluster.discovery import Obj, PodView, Verdict, ref, show_labels, show_selector
from offcluster.kube import selector_matches, service_selects
from offcluster.manifests import MANIFESTS, RenderError, render

# What `--live` asks the cluster for, in one `kubectl get` (the kinds every hop reads).
LIVE_KINDS = (
    "prometheuses.monitoring.coreos.com",
    "servicemonitors.monitoring.coreos.com",
    "podmonitors.monitoring.coreos.com",
    "prometheusrules.monitoring.coreos.com",
    "services",
    "endpointslices.discovery.k8s.io",
    "pods",
    "networkpolicies.networking.k8s.io",
    "namespaces",
    "configmaps",
)
# The grafana chart's dashboard sidecar container, and the env k8s-sidecar reads its selection from.
SIDECAR_CONTAINER = "grafana-sc-dashboard"
# The label every EndpointSlice carries naming its Service.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class InputError(Exception):
    """Input the doctor cannot read: exit 2 with this one line."""


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


# ---- the walks ---------------------------------------------------------------------------------------------


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
    return [_walk_endpoint(cluster, monitor, i, e) for i, e in enumerate(endpoints)]


def _walk_endpoint(cluster: Cluster, monitor: Obj, index: int, endpoint: Obj) -> Report:
    named = endpoint.get("port") or endpoint.get("targetPort")
    report = Report(f"{ref(monitor)}, endpoint {index} (port {named})")
    prometheuses = _selection(report, cluster, monitor, "prometheus")

    # The ServiceMonitor finds Services: namespaceSelector, then selector against the Services' labels.
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
        return report
    report.add(
        "service",
        Verdict(
            True, f"spec.selector {show_selector(selector)} in {where} matches " + ", ".join(ref(s) for s in services)
        ),
    )

    # The endpoint names a port of the Service: `port` a Service port's name, `targetPort` its targetPort.
    ports: list[tuple[Obj, Obj]] = []
    for service in services:
        for port in (service.get("spec") or {}).get("ports") or []:
            by_name = "port" in endpoint and port.get("name") == endpoint["port"]
            by_target = "port" not in endpoint and "targetPort" in endpoint and _target(port) == endpoint["targetPort"]
            if by_name or by_target:
                ports.append((service, port))
    if not ports:
        have = ", ".join(
            f"{p.get('name') or '<unnamed>'}→{_target(p)}" for s in services for p in s["spec"].get("ports") or []
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
        return report
    report.add(
        "port",
        Verdict(
            True,
            f"endpoints[{index}] {named!r} is "
            + ", ".join(f"{ref(s)} port {p.get('name')} ({p.get('port')}→{_target(p)})" for s, p in ports),
        ),
    )

    # A Service without a selector (the API server's `kubernetes`, the operator's kubelet Service) has its
    # endpoints written by someone else: no pod hop applies, only what its EndpointSlices hold.
    if not any((s.get("spec") or {}).get("selector") for s, _ in ports):
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
            _live_endpoints(report, cluster, ports)
            return report
        # Offline, only the manifests themselves could fill it.
        name, namespace = service["metadata"]["name"], service["metadata"].get("namespace", "default")
        filled = [o for o in cluster.of_kind("Endpoints") if o["metadata"]["name"] == name] + [
            o
            for o in cluster.of_kind("EndpointSlice")
            if (o["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL) == name
        ]
        filled = [o for o in filled if o["metadata"].get("namespace", "default") == namespace]
        report.add(
            "pods",
            Verdict(
                bool(filled),
                f"{ref(service)} has no spec.selector, and "
                + (
                    f"{ref(filled[0])} lists its endpoints"
                    if filled
                    else "no Endpoints or EndpointSlice in the manifests fills it: it stays empty"
                ),
                ""
                if filled
                else f"give {ref(service)} a spec.selector: a subset of the pod template's metadata.labels",
            ),
        )
        return report
    ports = [(s, p) for s, p in ports if (s.get("spec") or {}).get("selector")]

    # The Service's selector matches pods (offline: a workload's pod template; live: Pods).
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
        return report
    report.add(
        "pods",
        Verdict(
            True,
            f"{ref(chains[0][0])} spec.selector {show_labels(chains[0][0]['spec']['selector'])} "
            "matches " + _views(c[2] for c in chains),
        ),
    )

    # The Service port's targetPort is a container port of those pods.
    reached: list[tuple[Obj, Obj, PodView, Obj, Obj]] = []
    missing: list[tuple[Obj, PodView]] = []
    for service, port, pod in chains:
        found = d.container_port(pod, _target(port))
        if found:
            reached.append((service, port, pod, *found))
        else:
            missing.append((port, pod))
    if not reached:
        port, pod = missing[0]
        declared = (
            ", ".join(
                f"{p.get('name') or '<unnamed>'}={p.get('containerPort')}"
                for c in pod.containers
                for p in c.get("ports") or []
            )
            or "none"
        )
        report.add(
            "target-port",
            Verdict(
                False,
                f"targetPort {_target(port)!r} of port {port.get('name')} is no container port of {pod.source} "
                f"(container ports: {declared})",
                f"set targetPort of the Service port {port.get('name')} to the name of the container port that "
                "serves /metrics",
            ),
        )
        return report
    report.add(
        "target-port",
        Verdict(
            True,
            f"targetPort {_target(reached[0][1])!r} is container {reached[0][3]['name']} "
            f"port {_show_port(reached[0][4])} in " + _views(r[2] for r in reached),
        ),
    )

    _readiness(report, cluster, reached)
    if cluster.live:
        _live_endpoints(report, cluster, ports)
    _network_policy(report, cluster, prometheuses, [(pod, cport) for _, _, pod, _, cport in reached])
    return report


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
                f"spec.selector {show_selector(selector)} in {where} matches " + (_views(pods) if pods else "no pods"),
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
                    f"container {found[0][1]['name']} port {_show_port(found[0][2])}"
                    if found
                    else "no container port of " + _views(pods)
                ),
                ""
                if found
                else f"set podMetricsEndpoints[{index}].port to the name of the container port serving /metrics",
            ),
        ):
            continue
        _network_policy(report, cluster, prometheuses, [(p, cport) for p, _, cport in found])
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


def _readiness(report: Report, cluster: Cluster, reached: list[tuple[Obj, Obj, PodView, Obj, Obj]]) -> None:
    """Endpoints list a pod only once it is ready; without a readiness probe it is "ready" before it answers."""
    probed = [(pod, c) for _, _, pod, c, _ in reached if c.get("readinessProbe")]
    if not probed:
        pod, container = reached[0][2], reached[0][3]
        report.add(
            "readiness-probe",
            Verdict(
                False,
                f"container {container['name']} of {pod.source} has no readinessProbe: the pod joins the "
                "Endpoints before it can answer, and a wedged one never leaves them",
                f"add a readinessProbe to container {container['name']} (an HTTP GET answered once it can serve)",
            ),
        )
        return
    container = probed[0][1]
    probe = container["readinessProbe"]
    how = (
        f"httpGet {probe['httpGet'].get('path', '/')} on {probe['httpGet'].get('port')}"
        if "httpGet" in probe
        else ", ".join(k for k in ("tcpSocket", "exec", "grpc") if k in probe) or "a probe"
    )
    report.add("readiness-probe", Verdict(True, f"container {container['name']} has a readinessProbe ({how})"))
    if cluster.live:
        pods = {pod.source: pod for _, _, pod, _, _ in reached}
        ready = [p for p in pods.values() if p.ready]
        report.add(
            "pods-ready",
            Verdict(
                bool(ready),
                f"{len(ready)}/{len(pods)} pods ready"
                + (
                    ""
                    if len(ready) == len(pods)
                    else ": not ready " + ", ".join(s for s, p in pods.items() if not p.ready)
                ),
                ""
                if ready
                else "find why the readiness probe fails with `kubectl describe pod` (Events, Conditions) and the "
                "container's logs; Prometheus keeps not-ready pods as targets, but none of them serves",
            ),
        )


def _live_endpoints(report: Report, cluster: Cluster, ports: list[tuple[Obj, Obj]]) -> None:
    """What the operator's endpoint discovery reads: the Service's EndpointSlices. Prometheus makes a target of
    every endpoint on the port, ready or not (`__meta_kubernetes_endpointslice_endpoint_conditions_ready`)."""
    total, ready, slices_seen = 0, 0, []
    for service, port in ports:
        namespace, name = service["metadata"].get("namespace", "default"), service["metadata"]["name"]
        for eps in cluster.of_kind("EndpointSlice"):
            meta = eps["metadata"]
            if meta.get("namespace") != namespace or (meta.get("labels") or {}).get(SERVICE_NAME_LABEL) != name:
                continue
            slices_seen.append(ref(eps))
            if not any(p.get("name") == port.get("name") for p in eps.get("ports") or []):
                continue
            endpoints = eps.get("endpoints") or []
            total += len(endpoints)
            # A null `ready` means ready (discovery.k8s.io/v1).
            ready += sum(1 for e in endpoints if (e.get("conditions") or {}).get("ready") is not False)
    service, port_name = ports[0][0], ports[0][1].get("name")
    name = service["metadata"]["name"]
    where = ", ".join(slices_seen) or f"no EndpointSlice labelled {SERVICE_NAME_LABEL}={name}"
    namespace = service["metadata"].get("namespace")
    if (service.get("spec") or {}).get("selector"):
        fix = (
            f"run `kubectl -n {namespace} get pods` and `kubectl -n {namespace} describe service {name}`: the "
            "pods it selects must be scheduled and hold an IP"
        )
    else:
        fix = f"{ref(service)} has no selector: whatever writes its endpoints wrote none"
    text = f"{where}: {total} endpoint(s) on port {port_name}, {ready} ready"
    report.add(
        "endpointslice",
        Verdict(bool(total), text + ("" if total else ": Prometheus has no target"), "" if total else fix),
    )


def _network_policy(
    report: Report, cluster: Cluster, prometheuses: list[Obj], targets: list[tuple[PodView, Obj]]
) -> None:
    if not prometheuses:
        return
    blocked: list[tuple[PodView, Obj, Obj]] = []
    admitted: list[tuple[PodView, Obj, Obj]] = []
    for pod, cport in targets:
        for prometheus in prometheuses:
            src_ns = prometheus["metadata"].get("namespace", "default")
            allowed = d.ingress_allowed(
                cluster.policies,
                pod.namespace,
                pod.labels,
                cport.get("containerPort"),
                cport.get("name"),
                src_ns,
                cluster.ns_labels(src_ns),
                cluster.prometheus_pod_labels(prometheus),
                cport.get("protocol", "TCP"),
            )
            (admitted if allowed else blocked).append((pod, cport, prometheus))
    if admitted:
        pod, cport, prometheus = admitted[0]
        policies = d.isolating_policies(cluster.policies, pod.namespace, pod.labels)
        why = (
            f"{', '.join(ref(p) for p in policies)} admit{'s' if len(policies) == 1 else ''}"
            if policies
            else "no NetworkPolicy selects the pods, so it admits"
        )
        report.add(
            "network-policy",
            Verdict(
                True,
                f"{why} {ref(prometheus)} pods (namespace "
                f"{prometheus['metadata'].get('namespace')}) on port {_show_port(cport)}",
            ),
        )
        return
    pod, cport, prometheus = blocked[0]
    src_ns = prometheus["metadata"].get("namespace", "default")
    labels = cluster.prometheus_pod_labels(prometheus)
    policies = d.isolating_policies(cluster.policies, pod.namespace, pod.labels)
    report.add(
        "network-policy",
        Verdict(
            False,
            f"{', '.join(ref(p) for p in policies)} select{'s' if len(policies) == 1 else ''} {pod.source} and "
            f"admit{'s' if len(policies) == 1 else ''} no pod of {ref(prometheus)} "
            f"(namespace {src_ns}, labels app.kubernetes.io/name={labels.get('app.kubernetes.io/name')},"
            f"operator.prometheus.io/name={labels.get('operator.prometheus.io/name')}) on port {_show_port(cport)}",
            f"add an ingress rule to {ref(policies[0])} from namespaceSelector "
            f"{d.NAMESPACE_NAME_LABEL}={src_ns} with podSelector app.kubernetes.io/name=prometheus,"
            f"operator.prometheus.io/name={prometheus['metadata']['name']} on port "
            f"{cport.get('name') or cport.get('containerPort')}",
        ),
    )


def _target(port: Obj) -> int | str:
    """A Service port's targetPort; absent, it is the port's own number."""
    return port.get("targetPort", port.get("port"))


def _show_port(port: Obj) -> str:
    return f"{port['name']} ({port.get('containerPort')})" if port.get("name") else str(port.get("containerPort"))


def _views(pods: Iterable[PodView]) -> str:
    seen = list(dict.fromkeys(p.source for p in pods))
    return ", ".join(seen[:4]) + (f" and {len(seen) - 4} more" if len(seen) > 4 else "")


# ---- the whole check ----------------------------------------------------------------------------------------


def diagnose(cluster: Cluster, namespace: str | None = None) -> list[Report]:
    """Every report: ServiceMonitor and PodMonitor endpoints, PrometheusRules, dashboard ConfigMaps."""

    def mine(obj: Obj) -> bool:
        return namespace is None or obj["metadata"].get("namespace") == namespace

    reports: list[Report] = []
    walks: list[tuple[str, Callable[[Cluster, Obj], Any]]] = [
        ("ServiceMonitor", walk_service_monitor),
        ("PodMonitor", walk_pod_monitor),
        ("PrometheusRule", walk_rule),
    ]
    for kind, walk in walks:
        for obj in filter(mine, cluster.of_kind(kind)):
            found = walk(cluster, obj)
            reports.extend(found if isinstance(found, list) else [found])
    for configmap in filter(mine, cluster.of_kind("ConfigMap")):
        if any(str(key).endswith(".json") for key in configmap.get("data") or {}):
            reports.append(walk_dashboard(cluster, configmap))
    return reports


def format_reports(cluster: Cluster, reports: list[Report]) -> str:
    lines = [f"doctor: {cluster.origin}"]
    for prometheus in cluster.prometheuses:
        spec = prometheus.get("spec") or {}
        lines.append(
            f"  {ref(prometheus)}: serviceMonitorSelector {show_selector(spec.get('serviceMonitorSelector'))}, "
            f"ruleSelector {show_selector(spec.get('ruleSelector'))}"
        )
    for report in reports:
        lines.append(report.subject)
        lines.extend(h.line() for h in report.hops)
    monitors = [r for r in reports if r.subject.startswith(("ServiceMonitor", "PodMonitor"))]
    broken = [r for r in reports if not r.ok]
    if not monitors:
        lines.append("result: BROKEN, no ServiceMonitor or PodMonitor to walk")
    elif broken:
        lines.append(f"result: BROKEN, {len(broken)} of {len(reports)} checked objects have a broken hop")
    else:
        lines.append(
            f"result: ok, {len(monitors)} endpoint(s) reach a pod port, {len(reports) - len(monitors)} "
            "rule/dashboard object(s) picked up"
        )
    return "\n".join(lines)


def exit_code(reports: list[Report]) -> int:
    monitors = [r for r in reports if r.subject.startswith(("ServiceMonitor", "PodMonitor"))]
    return 0 if monitors and all(r.ok for r in reports) else 1


# ---- inputs -------------------------------------------------------------------------------------------------


def offline_cluster(directory: Path) -> Cluster:
    """DIR rendered by kustomize, with the chart's Prometheus and Grafana sidecar as helmfile deploys them."""
    if not directory.is_dir():
        raise InputError(f"{directory} is not a directory (give a kustomization directory, e.g. manifests)")
    try:
        objects = render(directory)
    except RenderError as exc:
        raise InputError(str(exc).splitlines()[0]) from None
    rendered = chart.rendered()
    prometheus = chart.prometheus(rendered)
    sidecar = chart.grafana_sidecar(rendered)
    shown = directory.relative_to(Path.cwd()) if directory.is_relative_to(Path.cwd()) else directory
    origin = f"{shown} (kubectl kustomize); chart objects: {chart.source()}"
    return Cluster(objects, [prometheus], sidecar, live=False, origin=origin)


def live_objects(from_json: Path | None) -> tuple[list[Obj], str]:
    if from_json is not None:
        try:
            text = from_json.read_text()
        except OSError as exc:
            raise InputError(f"cannot read {from_json}: {exc.strerror}") from None
        origin = f"{from_json} (saved kubectl get -o json)"
    else:
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise InputError("kubectl is not on PATH: --live needs it (or --from-json FILE)")
        command = [kubectl, "get", ",".join(LIVE_KINDS), "--all-namespaces", "-o", "json"]
        # No stdin: kubectl would otherwise stop to ask for a username when the kubeconfig has no credentials.
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise InputError("`kubectl get` did not answer within 120 s") from None
        if result.returncode != 0:
            # kubectl's own summary comes last, after the client library's log lines.
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise InputError(f"`kubectl get` failed: {last}")
        text, origin = result.stdout, "the cluster of kubectl's current context"
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{from_json or 'kubectl output'} is not JSON: {exc}") from None
    return _items(document), origin


def _items(document: Any) -> list[Obj]:
    """The objects of a `kubectl get -o json` answer: a List, one object, or an array of either."""
    if isinstance(document, list):
        return [o for part in document for o in _items(part)]
    if not isinstance(document, dict) or "kind" not in document:
        raise InputError("expected a kubectl List (kind: List, items: [...]) or Kubernetes objects")
    if document["kind"].endswith("List"):
        items = document.get("items")
        if not isinstance(items, list):
            raise InputError(f"a {document['kind']} without an items list")
        return [o for item in items for o in _items(item)]
    if not isinstance(document.get("metadata"), dict) or "name" not in document["metadata"]:
        raise InputError(f"a {document['kind']} without metadata.name")
    return [document]


def live_sidecar(objects: list[Obj]) -> dict[str, Any] | None:
    """The dashboard sidecar's selection as deployed: the env of its container in the Grafana pod."""
    for pod in objects:
        if pod.get("kind") != "Pod":
            continue
        for container in (pod.get("spec") or {}).get("containers") or []:
            if container.get("name") != SIDECAR_CONTAINER:
                continue
            env = {e["name"]: e.get("value") for e in container.get("env") or [] if "name" in e}
            searched = env.get("NAMESPACE")
            namespaces = [n.strip() for n in searched.split(",")] if searched else [pod["metadata"].get("namespace")]
            return {"label": env.get("LABEL"), "label_value": env.get("LABEL_VALUE"), "namespaces": namespaces}
    return None


def live_cluster(from_json: Path | None) -> Cluster:
    objects, origin = live_objects(from_json)
    prometheuses = [o for o in objects if o.get("kind") == "Prometheus"]
    return Cluster(objects, prometheuses, live_sidecar(objects), live=True, origin=origin)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m offcluster doctor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", nargs="?", help="a kustomization (default manifests)")
    parser.add_argument("--live", action="store_true", help="walk the cluster kubectl points at")
    parser.add_argument("--from-json", type=Path, metavar="FILE", help="a saved `kubectl get ... -A -o json`")
    parser.add_argument("-n", "--namespace", help="only the objects of this namespace")
    args = parser.parse_args(argv)
    live = args.live or args.from_json is not None
    if live and args.directory:
        parser.error("DIR is for the offline walk: give it or --live / --from-json, not both")
    try:
        cluster = live_cluster(args.from_json) if live else offline_cluster(Path(args.directory or MANIFESTS))
        reports = diagnose(cluster, args.namespace)
    except InputError as exc:
        print(f"doctor: {exc}", file=sys.stderr)
        return 2
    except (RenderError, yaml.YAMLError) as exc:
        print(f"doctor: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    try:
        print(format_reports(cluster, reports), flush=True)
    except BrokenPipeError:
        # `doctor | head` closed the pipe: the verdict still goes out as the exit status.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return exit_code(reports)
