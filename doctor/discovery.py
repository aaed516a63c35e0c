"""The rules that decide, on a cluster, whether a monitoring object is picked up: one function per hop.

Each mirrors what prometheus-operator, the API server, a NetworkPolicy-enforcing CNI or the Grafana sidecar
does, small enough to evaluate offline on rendered manifests or on `kubectl get -o json` output. A wrong
answer from any of them shows on a cluster as "nothing happens", which is why `python -m doctor`
and tests/manifests both use these and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from declarations.selectors import Labels, selector_matches

Obj = dict[str, Any]

# The label the API server puts on every Namespace (1.21+): what namespaceSelectors usually match on.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

# The Prometheus selector field prefix for each kind it discovers.
SELECTOR_OF = {"ServiceMonitor": "serviceMonitor", "PodMonitor": "podMonitor", "PrometheusRule": "rule"}

# Kinds whose pod template a Service selector can match, and where the template sits.
WORKLOAD_TEMPLATE = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


def ref(obj: Mapping[str, Any]) -> str:
    """`Kind namespace/name`, the way every message names an object."""
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


def show_selector(selector: Mapping[str, Any] | None) -> str:
    """A label selector as kubectl's `-l` syntax: `a=b,c in (d,e)`; `{}` is everything, None nothing."""
    if selector is None:
        return "<none: selects nothing>"
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], ",".join(expr.get("values") or [])
        parts.append({"Exists": key, "DoesNotExist": f"!{key}"}.get(op, f"{key} {op.lower()} ({values})"))
    return ",".join(parts) or "{} (everything)"


def show_labels(labels: Labels) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<no labels>"


# ---- namespaces -------------------------------------------------------------------------------------------


def namespace_labels(namespace: str, objects: Iterable[Obj] = ()) -> dict[str, str]:
    """The labels a namespace has on a cluster: those in its manifest plus the API server's name label."""
    labels: dict[str, str] = {}
    for obj in objects:
        if obj.get("kind") == "Namespace" and obj["metadata"]["name"] == namespace:
            labels.update(obj["metadata"].get("labels") or {})
    labels[NAMESPACE_NAME_LABEL] = namespace
    return labels


# ---- Prometheus (prometheus-operator) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    ok: bool
    why: str
    fix: str = ""


def prometheus_selects(prometheus: Obj, obj: Obj, ns_labels: Labels) -> tuple[Verdict, Verdict]:
    """Whether a Prometheus object loads `obj` (ServiceMonitor, PodMonitor, PrometheusRule): by its labels,
    then by its namespace. The operator's rules (Prometheus CRD): a null object selector selects nothing,
    `{}` everything; a null namespace selector means the Prometheus object's own namespace only."""
    kind = SELECTOR_OF[obj["kind"]]
    spec = prometheus.get("spec") or {}
    selector = spec.get(f"{kind}Selector")
    labels = obj["metadata"].get("labels") or {}
    who = ref(prometheus)
    if selector is None:
        by_labels = Verdict(
            False,
            f"{who} has no spec.{kind}Selector, so it loads no {obj['kind']} at all",
            f"give the Prometheus a {kind}Selector (chart value prometheus.prometheusSpec.{kind}Selector, "
            f"or {kind}SelectorNilUsesHelmValues: true for `release: <release name>`)",
        )
    elif selector_matches(selector, labels):
        by_labels = Verdict(True, f"{who} spec.{kind}Selector {show_selector(selector)} matches its labels")
    else:
        wanted = selector.get("matchLabels") or {}
        missing = {k: v for k, v in wanted.items() if labels.get(k) != v}
        add = f"add the label {show_labels(missing)}" if missing else "change its labels to match the selector"
        by_labels = Verdict(
            False,
            f"{who} spec.{kind}Selector {show_selector(selector)} does not match its labels {show_labels(labels)}",
            f"{add} in metadata.labels of {ref(obj)}",
        )
    namespace = obj["metadata"].get("namespace", "default")
    ns_selector = spec.get(f"{kind}NamespaceSelector")
    own = (prometheus.get("metadata") or {}).get("namespace")
    if ns_selector is None:
        ok = namespace == own
        by_namespace = Verdict(
            ok,
            f"{who} has no spec.{kind}NamespaceSelector: it searches its own namespace {own} only"
            + ("" if ok else f", not {namespace}"),
            ""
            if ok
            else f"set spec.{kind}NamespaceSelector: {{}} on the Prometheus (chart value "
            f"prometheus.prometheusSpec.{kind}NamespaceSelector) or create {ref(obj)} in {own}",
        )
    elif selector_matches(ns_selector, ns_labels):
        by_namespace = Verdict(
            True, f"{who} spec.{kind}NamespaceSelector {show_selector(ns_selector)} matches namespace {namespace}"
        )
    else:
        by_namespace = Verdict(
            False,
            f"{who} spec.{kind}NamespaceSelector {show_selector(ns_selector)} does not match namespace "
            f"{namespace} ({_relevant(ns_labels, ns_selector)})",
            f"label namespace {namespace} to match {show_selector(ns_selector)}, or widen the Prometheus "
            f"{kind}NamespaceSelector (chart value prometheus.prometheusSpec.{kind}NamespaceSelector)",
        )
    return by_labels, by_namespace


def _relevant(labels: Labels, selector: Mapping[str, Any]) -> str:
    """What a namespace has of the labels a selector reads: the part that explains a mismatch."""
    keys = list(selector.get("matchLabels") or {}) + [e["key"] for e in selector.get("matchExpressions") or []]
    return ", ".join(f"{k}={labels[k]}" if k in labels else f"no label {k}" for k in dict.fromkeys(keys))


# ---- ServiceMonitor / PodMonitor --------------------------------------------------------------------------


def monitor_namespaces(monitor: Obj) -> list[str] | None:
    """The namespaces a ServiceMonitor or PodMonitor looks in: None for all (`any: true`), else `matchNames`,
    else its own namespace."""
    chosen = (monitor.get("spec") or {}).get("namespaceSelector") or {}
    if chosen.get("any"):
        return None
    return list(chosen.get("matchNames") or [monitor["metadata"].get("namespace", "default")])


def in_namespaces(obj: Obj, namespaces: list[str] | None) -> bool:
    return namespaces is None or obj["metadata"].get("namespace", "default") in namespaces


# ---- pods --------------------------------------------------------------------------------------------------


@dataclass
class PodView:
    """A set of pods: a workload's template offline, or one running Pod on a cluster (with its readiness)."""

    source: str  # "Deployment ml-serving/x (pod template)" or "Pod ml-serving/x-abc"
    namespace: str
    labels: dict[str, str]
    spec: Obj
    ready: bool | None = None  # None: not known (offline)
    containers: list[Obj] = field(init=False)

    def __post_init__(self) -> None:
        self.containers = list(self.spec.get("containers") or [])


def pod_views(objects: Iterable[Obj], live: bool) -> list[PodView]:
    """Offline: the pod template of each workload. Live: the Pods themselves (the controllers' truth)."""
    views: list[PodView] = []
    for obj in objects:
        kind, meta = obj.get("kind"), obj.get("metadata") or {}
        namespace = meta.get("namespace", "default")
        if kind == "Pod":
            if live and (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            views.append(
                PodView(
                    ref(obj),
                    namespace,
                    dict(meta.get("labels") or {}),
                    obj.get("spec") or {},
                    pod_ready(obj) if live else None,
                )
            )
        elif kind in WORKLOAD_TEMPLATE and not live:
            template: Any = obj
            for key in WORKLOAD_TEMPLATE[kind]:
                template = (template or {}).get(key)
            template = template or {}
            labels = dict((template.get("metadata") or {}).get("labels") or {})
            views.append(PodView(f"{ref(obj)} (pod template)", namespace, labels, template.get("spec") or {}))
    return views


def pod_ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def container_port(pod: PodView, target: int | str) -> tuple[Obj, Obj] | None:
    """The (container, port) a Service's targetPort (a name or a number) lands on in these pods."""
    for container in pod.containers:
        for port in container.get("ports") or []:
            if port.get("name") == target if isinstance(target, str) else port.get("containerPort") == target:
                return container, port
    return None


# ---- Grafana dashboard sidecar (k8s-sidecar) --------------------------------------------------------------


def sidecar_sees(sidecar: Mapping[str, Any], configmap: Obj) -> Verdict:
    """Whether the Grafana dashboard sidecar loads `configmap`. `sidecar` holds `label`, `label_value` (empty:
    any value), `namespaces` (names; "ALL", or None, means every namespace) and optionally `enabled` and
    `resource`: declarations.chart.grafana_sidecar."""
    if not sidecar.get("enabled", True):
        return Verdict(
            False,
            "the Grafana dashboard sidecar is disabled",
            "set the chart value grafana.sidecar.dashboards.enabled: true",
        )
    if sidecar.get("resource", "both") not in ("both", "configmap"):
        return Verdict(
            False,
            f"the Grafana dashboard sidecar watches {sidecar['resource']}, not ConfigMaps",
            "set the chart value grafana.sidecar.dashboards.resource: both",
        )
    label, wanted = sidecar.get("label"), sidecar.get("label_value")
    labels = configmap["metadata"].get("labels") or {}
    shown = f"{label}={wanted}" if wanted not in (None, "") else str(label)
    if label not in labels:
        return Verdict(
            False,
            f"{ref(configmap)} lacks the label {label} the Grafana sidecar selects on",
            f"add the label {shown} to {ref(configmap)}",
        )
    # An empty label value means "any value" (LABEL_VALUE unset in k8s-sidecar).
    if wanted not in (None, "") and labels[label] != str(wanted):
        return Verdict(
            False,
            f"{ref(configmap)} has {label}={labels[label]}, the Grafana sidecar wants {wanted}",
            f"set the label {shown} on {ref(configmap)}",
        )
    namespace = configmap["metadata"].get("namespace", "default")
    names = sidecar.get("namespaces")
    names = [names] if isinstance(names, str) else names
    if names is not None and "ALL" not in names and namespace not in names:
        return Verdict(
            False,
            f"the Grafana sidecar searches {', '.join(names)}, not {namespace}",
            f"add {namespace} to the chart value grafana.sidecar.dashboards.searchNamespace (or ALL)",
        )
    where = "every namespace" if names is None or "ALL" in names else ", ".join(names)
    return Verdict(True, f"{ref(configmap)} carries {label}={labels[label]}; the sidecar wants {shown} in {where}")


# ---- NetworkPolicy ----------------------------------------------------------------------------------------


def _port_matches(rule_ports: list[Obj] | None, port: int, port_name: str | None, protocol: str) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        wanted = p.get("port")
        if wanted is None or wanted == port or (port_name is not None and wanted == port_name):
            return True
        if isinstance(wanted, int) and p.get("endPort") and wanted <= port <= p["endPort"]:
            return True
    return False


def _peer_matches(peer: Obj, policy_ns: str, src_ns: str, src_ns_labels: Labels, src_labels: Labels) -> bool:
    if "ipBlock" in peer:
        return False  # pod IPs are not known offline; an ipBlock is never how in-cluster peers should match
    ns_selector, pod_selector = peer.get("namespaceSelector"), peer.get("podSelector")
    if ns_selector is None and src_ns != policy_ns:
        return False
    if ns_selector is not None and not selector_matches(ns_selector, src_ns_labels):
        return False
    return pod_selector is None or selector_matches(pod_selector, src_labels)


def isolating_policies(policies: Iterable[Obj], pod_ns: str, pod_labels: Labels) -> list[Obj]:
    """The Ingress NetworkPolicies that select a pod: once there is one, only what they allow gets in."""
    return [
        p
        for p in policies
        if p["metadata"].get("namespace", "default") == pod_ns
        and selector_matches(p["spec"].get("podSelector", {}), pod_labels)
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
    ]


def ingress_allowed(
    policies: Iterable[Obj],
    pod_ns: str,
    pod_labels: Labels,
    port: int,
    port_name: str | None,
    src_ns: str,
    src_ns_labels: Labels,
    src_labels: Labels,
    protocol: str = "TCP",
) -> bool:
    """Whether a connection from a pod (src) to `port` of a pod (pod_ns, pod_labels) is allowed.

    NetworkPolicies are additive allow-lists: a pod selected by no Ingress policy accepts everything; once
    one selects it, a connection needs one rule (any policy) whose peers and ports both match.
    """
    isolating = isolating_policies(policies, pod_ns, pod_labels)
    if not isolating:
        return True
    for policy in isolating:
        for rule in policy["spec"].get("ingress") or []:
            peers = rule.get("from")
            peer_ok = not peers or any(_peer_matches(peer, pod_ns, src_ns, src_ns_labels, src_labels) for peer in peers)
            if peer_ok and _port_matches(rule.get("ports"), port, port_name, protocol):
                return True
    return False
