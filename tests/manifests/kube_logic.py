"""The rules a cluster applies silently, re-implemented small enough to check offline.

Each function mirrors one piece of Kubernetes, prometheus-operator, the Grafana sidecar or Alertmanager
behaviour that decides whether an object is picked up. When one of them disagrees with reality, the
symptom on a cluster is "nothing happens", which is why the tests check these instead of trusting names.
What kube-prometheus-stack itself writes (the Prometheus object, the sidecar's settings) is not re-derived
here: Helm renders it (declarations/chart.py).
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

from declarations.selectors import Labels
from doctor import discovery

# Re-exported for the tests: the hop rules live in doctor.discovery, which `python -m offcluster doctor` runs.
from doctor.discovery import NAMESPACE_NAME_LABEL as NAMESPACE_NAME_LABEL
from doctor.discovery import ingress_allowed as ingress_allowed
from doctor.discovery import namespace_labels as namespace_labels

Obj = dict[str, Any]


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
    """Whether a Prometheus object (declarations.chart.prometheus) picks up `obj` (a ServiceMonitor, PodMonitor or
    PrometheusRule): the doctor's two hops (doctor.discovery.prometheus_selects), as one answer."""
    kinds = {v: k for k, v in discovery.SELECTOR_OF.items()}
    for verdict in discovery.prometheus_selects(dict(prometheus), {**obj, "kind": kinds[kind]}, ns_labels):
        if not verdict.ok:
            return False, verdict.why
    return True, "selected"


# ---- Grafana dashboard sidecar (k8s-sidecar) --------------------------------------------------------------


def sidecar_sees(sidecar: Mapping[str, Any], configmap: Obj) -> tuple[bool, str]:
    """Whether the dashboard sidecar (declarations.chart.grafana_sidecar: label, label_value, namespaces, and
    optionally enabled/resource as the grafana chart's values say) loads `configmap`."""
    verdict = discovery.sidecar_sees(sidecar, configmap)
    return verdict.ok, verdict.why if not verdict.ok else "seen"


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
