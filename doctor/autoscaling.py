"""The doctor's hops on a KEDA ScaledObject: its target exists, each Prometheus trigger asks a Service in front of
the chart's Prometheus, for metrics the app exports or rules record, with the app's job and namespace."""

from __future__ import annotations

import re
from collections.abc import Iterable

from declarations.autoscaling import PrometheusTrigger, chart_services, prometheus_triggers, recorded_names
from declarations.promql import metric_names
from declarations.selectors import Labels, service_selects
from doctor.discovery import Obj, Verdict, ref
from doctor.report import Cluster, Report

# Series Prometheus makes itself, which a query may read without the app exporting them.
SYNTHETIC = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})
_MATCHER = re.compile(r'\b(\w+)\s*=\s*"([^"]*)"')


def exported_names() -> set[str]:
    """The sample names app/metrics.py's collectors expose (imported here, not at module load: importing it
    registers the collectors, which only the app and the checks need)."""
    from prometheus_client.metrics import MetricWrapperBase

    import app.metrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names: set[str] = set()
    for value in vars(app.metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                names |= {family.name + suffix for suffix in suffixes[family.type]}
    return names


def scale_target(scaled: Obj, objects: Iterable[Obj]) -> Verdict:
    """The workload spec.scaleTargetRef names exists in the ScaledObject's namespace (KEDA's default kind is a
    Deployment of apps/v1)."""
    target = (scaled.get("spec") or {}).get("scaleTargetRef") or {}
    kind, name = target.get("kind") or "Deployment", target.get("name")
    namespace = scaled["metadata"].get("namespace")
    same_kind = [o for o in objects if o.get("kind") == kind and o["metadata"].get("namespace") == namespace]
    if any(o["metadata"]["name"] == name for o in same_kind):
        return Verdict(True, f"scales {kind} {namespace}/{name}")
    names = ", ".join(sorted(o["metadata"]["name"] for o in same_kind)) or "none"
    return Verdict(
        False,
        f"spec.scaleTargetRef names {kind} {namespace}/{name}, which does not exist ({kind}s there: {names})",
        f"set spec.scaleTargetRef.name to the {kind} to scale",
    )


def prometheus_server(
    trigger: PrometheusTrigger, namespace: str, services: Iterable[Obj], pod_labels: Labels
) -> Verdict:
    """serverAddress names, through cluster DNS, a Service that fronts the Prometheus pods, on one of its ports."""
    name, service_ns = trigger.service()
    service_ns = service_ns or namespace
    _, port = trigger.host_port
    fronting = [s for s in services if service_selects((s.get("spec") or {}).get("selector"), pod_labels)]
    shown = ", ".join(f"{_address(s)}" for s in fronting)
    fix = f"set serverAddress to http://<service>.<namespace>.svc:<port> of one of: {shown or 'none found'}"
    for service in fronting:
        if (service["metadata"]["name"], service["metadata"].get("namespace")) == (name, service_ns):
            if port in {p["port"] for p in service["spec"].get("ports") or []}:
                return Verdict(True, f"{trigger.server_address} is Service {service_ns}/{name}, in front of Prometheus")
            return Verdict(False, f"{trigger.server_address}: Service {service_ns}/{name} has no port {port}", fix)
    return Verdict(False, f"{trigger.server_address}: no Service {service_ns}/{name} in front of Prometheus", fix)


def _address(service: Obj) -> str:
    ports = "/".join(str(p["port"]) for p in (service.get("spec") or {}).get("ports") or [])
    return f"{service['metadata'].get('namespace')}/{service['metadata']['name']}:{ports}"


def query_metrics(trigger: PrometheusTrigger, known: set[str]) -> Verdict:
    """Every metric the query reads is one the app exports or a rule records: else Prometheus answers with
    nothing, KEDA reads 0 and the HPA never scales on this trigger."""
    names = metric_names(trigger.query)
    if not names:
        return Verdict(False, f"the query reads no metric: {trigger.query}", "query a metric of app/metrics.py")
    unknown = sorted(names - known - SYNTHETIC)
    if unknown:
        return Verdict(
            False,
            f"the query reads {', '.join(unknown)}, which the app does not export and no rule records",
            "use a name of app/metrics.py (docs/metrics.md) or of a recording rule",
        )
    return Verdict(True, f"the query reads {', '.join(sorted(names))}, exported by the app or recorded")


def query_labels(trigger: PrometheusTrigger, namespace: str, services: Iterable[Obj]) -> Verdict:
    """`namespace` and `job` matchers of the query are those prometheus-operator gives the app's series (the
    namespace and the name of the scraped Service)."""
    matchers = dict(_MATCHER.findall(trigger.query))
    problems = []
    if "namespace" in matchers and matchers["namespace"] != namespace:
        problems.append(f'namespace="{matchers["namespace"]}" is not the target\'s namespace {namespace}')
    names = {s["metadata"]["name"] for s in services if s["metadata"].get("namespace") == namespace}
    if "job" in matchers and matchers["job"] not in names:
        problems.append(f'job="{matchers["job"]}" names no Service in {namespace} ({", ".join(sorted(names))})')
    if problems:
        return Verdict(False, "; ".join(problems), "match the job label (the Service's name) and the namespace")
    return Verdict(True, "namespace and job matchers name the target's namespace and Service")


def walk_scaled_object(cluster: Cluster, scaled: Obj) -> Report:
    """Its target exists; each Prometheus trigger asks a Service in front of a Prometheus, for metrics the
    app exports (or rules record), with the app's job and namespace."""
    report = Report(ref(scaled))
    report.add("scale-target", scale_target(scaled, cluster.objects))
    namespace = scaled["metadata"].get("namespace", "default")
    known = exported_names() | recorded_names(cluster.objects)

    def services(prometheus: Obj, pod_labels: dict[str, str]) -> list[Obj]:
        if cluster.prometheus_services:
            return cluster.prometheus_services
        # Live, the cluster's Services; offline without a render, the one the chart names after the Prometheus.
        return cluster.of_kind("Service") if cluster.live else chart_services(None, prometheus, pod_labels)

    for trigger in prometheus_triggers(scaled):
        verdicts = []
        for prometheus in cluster.prometheuses:
            pod_labels = cluster.prometheus_pod_labels(prometheus)
            verdicts.append(prometheus_server(trigger, namespace, services(prometheus, pod_labels), pod_labels))
        if not verdicts:
            verdicts = [Verdict(False, "no Prometheus object found", "install kube-prometheus-stack (helmfile sync)")]
        report.add("prometheus-server", next((v for v in verdicts if v.ok), verdicts[0]))
        report.add("query-metrics", query_metrics(trigger, known))
        report.add("query-labels", query_labels(trigger, namespace, cluster.of_kind("Service")))
    return report
