"""The rules a cluster applies silently, re-implemented small enough to check offline.

Each function mirrors one piece of Kubernetes, prometheus-operator, the Grafana sidecar or Alertmanager
behaviour that decides whether an object is picked up. When one of them disagrees with reality, the
symptom on a cluster is "nothing happens", which is why the tests check these instead of trusting names.
What kube-prometheus-stack itself writes (the Prometheus object, the sidecar's settings) is not re-derived
here: Helm renders it (offcluster/chart.py).
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

from offcluster.kube import Labels, selector_matches

Obj = dict[str, Any]

# The label the API server puts on every Namespace (1.21+): what namespaceSelectors usually match on.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


# ---- namespaces -------------------------------------------------------------------------------------------


def namespace_labels(namespace: str, objects: Iterable[Obj] = ()) -> dict[str, str]:
    """The labels a namespace has on a cluster: those in its manifest plus the API server's name label."""
    labels: dict[str, str] = {}
    for obj in objects:
        if obj.get("kind") == "Namespace" and obj["metadata"]["name"] == namespace:
            labels.update(obj["metadata"].get("labels") or {})
    labels[NAMESPACE_NAME_LABEL] = namespace
    return labels


# ---- Helm values ------------------------------------------------------------------------------------------


def unknown_keys(
    values: Mapping[str, Any],
    defaults: list[Any],
    free_form: Iterable[str],
    path: tuple[str, ...] = (),
) -> list[str]:
    """Dotted paths of keys in `values` that no mapping in `defaults` (same level) declares.

    Helm accepts any key and ignores the ones no template reads, so a typo is a silent no-op. `free_form`
    holds glob patterns over dotted paths whose subtree is user data (not chart keys) and is not descended.
    """
    patterns = list(free_form)
    problems: list[str] = []
    for key, value in values.items():
        here = (*path, str(key))
        dotted = ".".join(here)
        candidates = [d[key] for d in defaults if isinstance(d, dict) and key in d]
        if not candidates:
            problems.append(f"{dotted}: not a key of the chart's default values")
            continue
        if any(fnmatch.fnmatchcase(dotted, p) for p in patterns):
            continue
        if isinstance(value, dict) and value:
            maps = [c for c in candidates if isinstance(c, dict)]
            if not maps and all(c is not None for c in candidates):
                problems.append(f"{dotted}: a map where the chart expects {type(candidates[0]).__name__}")
                continue
            problems.extend(unknown_keys(value, maps, patterns, here))
    return problems


# ---- prometheus-operator selection -------------------------------------------------------------------------


def prometheus_selects(obj: Obj, prometheus: Mapping[str, Any], kind: str, ns_labels: Labels) -> tuple[bool, str]:
    """Whether a Prometheus object (offcluster.chart.prometheus) picks up `obj` (a ServiceMonitor, PodMonitor or
    PrometheusRule): its `<kind>Selector` on the object's labels (absent: nothing), its
    `<kind>NamespaceSelector` on the namespace's labels (absent or `{}`: every namespace)."""
    spec = prometheus.get("spec") or {}
    selector = spec.get(f"{kind}Selector")
    labels = obj["metadata"].get("labels") or {}
    if selector is None:
        return False, f"the Prometheus object has no {kind}Selector: it loads no {kind} at all"
    if not selector_matches(selector, labels):
        return False, f"{kind}Selector {selector} does not match the labels {labels}"
    ns_selector = spec.get(f"{kind}NamespaceSelector") or {}
    if not selector_matches(ns_selector, ns_labels):
        return False, f"{kind}NamespaceSelector {ns_selector} does not match the namespace labels {ns_labels}"
    return True, "selected"


# ---- Grafana dashboard sidecar (k8s-sidecar) --------------------------------------------------------------


def sidecar_sees(sidecar: Mapping[str, Any], configmap: Obj) -> tuple[bool, str]:
    """Whether the dashboard sidecar (offcluster.chart.grafana_sidecar: label, label_value, namespaces, and
    optionally enabled/resource as the grafana chart's values say) loads `configmap`."""
    if not sidecar.get("enabled", True):
        return False, "the dashboard sidecar is disabled"
    if sidecar.get("resource", "both") not in ("both", "configmap"):
        return False, f"the sidecar watches {sidecar['resource']}, not ConfigMaps"
    label, wanted = sidecar.get("label"), sidecar.get("label_value")
    labels = configmap["metadata"].get("labels") or {}
    if label not in labels:
        return False, f"the ConfigMap lacks the label {label!r} the sidecar selects on"
    # No label value means "any value" (LABEL_VALUE unset in k8s-sidecar).
    if wanted not in (None, "") and labels[label] != str(wanted):
        return False, f"label {label}={labels[label]!r}, the sidecar wants {wanted!r}"
    namespace = configmap["metadata"].get("namespace")
    names = sidecar.get("namespaces")
    if names != "ALL" and namespace not in (names or []):
        return False, f"the sidecar searches {names}, not {namespace!r}"
    return True, "seen"


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
    isolating = [
        p
        for p in policies
        if p["metadata"].get("namespace") == pod_ns
        and selector_matches(p["spec"].get("podSelector", {}), pod_labels)
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not isolating:
        return True
    for policy in isolating:
        for rule in policy["spec"].get("ingress") or []:
            peers = rule.get("from")
            peer_ok = not peers or any(_peer_matches(peer, pod_ns, src_ns, src_ns_labels, src_labels) for peer in peers)
            if peer_ok and _port_matches(rule.get("ports"), port, port_name, protocol):
                return True
    return False


# ---- CRD schemas ------------------------------------------------------------------------------------------


def closed_schema(schema: Obj) -> Obj:
    """A deep copy of a CRD's openAPIV3Schema where every object that lists `properties` (and is not marked
    x-kubernetes-preserve-unknown-fields) rejects other keys, as the API server's pruning would drop them."""
    closed = copy.deepcopy(schema)
    _close(closed)
    return closed


def _close(node: Any) -> None:
    if not isinstance(node, dict):
        return
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        node.setdefault("additionalProperties", False)
    for child in (node.get("properties") or {}).values():
        _close(child)
    for key in ("items", "additionalProperties", "not"):
        _close(node.get(key))
    for key in ("allOf", "anyOf", "oneOf"):
        for child in node.get(key) or []:
            _close(child)


# ---- Alertmanager routing ---------------------------------------------------------------------------------


def all_receiver_refs(route: Mapping[str, Any]) -> set[str]:
    refs = {route["receiver"]} if "receiver" in route else set()
    for child in route.get("routes") or []:
        refs |= all_receiver_refs(child)
    return refs


# ---- Pod security -----------------------------------------------------------------------------------------


def pod_security_findings(pod_spec: Mapping[str, Any]) -> list[str]:
    """What in a pod spec falls short of this project's baseline (PSA "restricted" plus resources)."""
    findings: list[str] = []
    pod_ctx = pod_spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(flag):
            findings.append(f"pod: {flag} is on")
    for volume in pod_spec.get("volumes") or []:
        if "hostPath" in volume:
            findings.append(f"pod: volume {volume['name']} is a hostPath")
    containers = list(pod_spec.get("initContainers") or []) + list(pod_spec.get("containers") or [])
    for c in containers:
        ctx = c.get("securityContext") or {}
        where = f"container {c.get('name')}"

        def setting(key: str, ctx: Mapping[str, Any] = ctx) -> Any:
            return ctx.get(key, pod_ctx.get(key))

        if setting("runAsNonRoot") is not True:
            findings.append(f"{where}: runAsNonRoot is not true")
        uid = setting("runAsUser")
        if not isinstance(uid, int) or isinstance(uid, bool) or uid <= 0:
            findings.append(f"{where}: runAsUser is not a numeric non-root uid ({uid!r})")
        if ctx.get("readOnlyRootFilesystem") is not True:
            findings.append(f"{where}: readOnlyRootFilesystem is not true")
        if ctx.get("allowPrivilegeEscalation") is not False:
            findings.append(f"{where}: allowPrivilegeEscalation is not false")
        if ctx.get("privileged"):
            findings.append(f"{where}: privileged")
        if "ALL" not in ((ctx.get("capabilities") or {}).get("drop") or []):
            findings.append(f"{where}: capabilities do not drop ALL")
        if ((ctx.get("capabilities") or {}).get("add")) or []:
            findings.append(f"{where}: adds capabilities")
        if (setting("seccompProfile") or {}).get("type") != "RuntimeDefault":
            findings.append(f"{where}: seccompProfile is not RuntimeDefault")
        resources = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(kind) or {}):
                    findings.append(f"{where}: no {resource} {kind[:-1]}")
    return findings
