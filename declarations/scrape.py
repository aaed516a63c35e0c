"""ServiceMonitors turned into Prometheus scrape jobs, the way prometheus-operator v0.93 turns them.

The job follows `generateServiceMonitorConfig` in the operator's pkg/prometheus/promcfg.go: the same job name,
the same relabelling rules in the same order (service selector, port filter, namespace/service/pod/container,
running filter, targetLabels, podTargetLabels, job, endpoint, then the user's relabelings), and only the
fields the ServiceMonitor sets (an unset interval or timeout is left to Prometheus). Discovery is replaced by
static targets that carry the meta labels a cluster would give them (`declarations.targets`), so the labels
Prometheus ends up with are produced by the operator's rules, not typed in here. Left out: the sharding
rules (one shard keeps every target and adds no label).

A ServiceMonitor field the local stack does not reproduce is refused with its name, never ignored.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from declarations.durations import seconds
from declarations.manifests import Obj, RenderError, of_kind
from declarations.targets import Target, label_name, meta_labels, targets

# Fields reproduced exactly; any other field of a ServiceMonitor is refused (`unsupported_fields`).
SPEC_FIELDS = {"selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels", "podTargetLabels"}
SELECTOR_FIELDS = {"matchLabels", "matchExpressions"}
NAMESPACE_SELECTOR_FIELDS = {"any", "matchNames"}
ENDPOINT_FIELDS = {
    "port", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout", "honorLabels", "honorTimestamps",
    "filterRunning", "relabelings", "metricRelabelings",
}  # fmt: skip
RELABEL_FIELDS = {"sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement", "action"}


def unsupported_fields(monitor: Obj) -> list[str]:
    """Dotted paths of the fields of `monitor` the local stack would not reproduce."""
    spec = monitor.get("spec") or {}
    found = [f"spec.{k}" for k in spec if k not in SPEC_FIELDS]
    found += [f"spec.selector.{k}" for k in spec.get("selector") or {} if k not in SELECTOR_FIELDS]
    found += [
        f"spec.namespaceSelector.{k}" for k in spec.get("namespaceSelector") or {} if k not in NAMESPACE_SELECTOR_FIELDS
    ]
    for i, endpoint in enumerate(spec.get("endpoints") or []):
        found += [f"spec.endpoints[{i}].{k}" for k in endpoint if k not in ENDPOINT_FIELDS]
        for key in ("relabelings", "metricRelabelings"):
            for j, rule in enumerate(endpoint.get(key) or []):
                found += [f"spec.endpoints[{i}].{key}[{j}].{k}" for k in rule if k not in RELABEL_FIELDS]
    return found


def check_supported(objects: Iterable[Obj]) -> None:
    for monitor in of_kind(objects, "ServiceMonitor"):
        fields = unsupported_fields(monitor)
        if fields:
            meta = monitor["metadata"]
            raise RenderError(
                f"ServiceMonitor {meta.get('namespace')}/{meta['name']}: {', '.join(fields)} is not reproduced by "
                "the local stack (declarations/scrape.py lists what is); remove it to run locally"
            )


def relabel_config(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A ServiceMonitor relabeling (camelCase) as the operator writes it (generateRelabelConfig): empty fields
    left out, except `separator` and `replacement`, which count once set, even to ""."""
    out: dict[str, Any] = {}
    if rule.get("sourceLabels"):
        out["source_labels"] = rule["sourceLabels"]
    if rule.get("separator") is not None:
        out["separator"] = rule["separator"]
    if rule.get("targetLabel"):
        out["target_label"] = rule["targetLabel"]
    if rule.get("regex"):
        out["regex"] = rule["regex"]
    if rule.get("modulus"):
        out["modulus"] = rule["modulus"]
    if rule.get("replacement") is not None:
        out["replacement"] = rule["replacement"]
    if rule.get("action"):
        out["action"] = str(rule["action"]).lower()
    return out


def _service_selector_rules(selector: Mapping[str, Any]) -> list[dict[str, Any]]:
    def sources(key: str) -> list[str]:
        name = label_name(key)
        return [f"__meta_kubernetes_service_label_{name}", f"__meta_kubernetes_service_labelpresent_{name}"]

    rules = []
    match_labels = selector.get("matchLabels") or {}
    for key in sorted(match_labels):
        rules.append({"action": "keep", "source_labels": sources(key), "regex": f"({match_labels[key]});true"})
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], "|".join(expr.get("values") or [])
        present = [f"__meta_kubernetes_service_labelpresent_{label_name(key)}"]
        rules.append(
            {
                "In": {"action": "keep", "source_labels": sources(key), "regex": f"({values});true"},
                "NotIn": {"action": "drop", "source_labels": sources(key), "regex": f"({values});true"},
                "Exists": {"action": "keep", "source_labels": present, "regex": "true"},
                "DoesNotExist": {"action": "drop", "source_labels": present, "regex": "true"},
            }[op]
        )
    return rules


def _copied_labels(kind: str, keys: Iterable[str]) -> list[dict[str, Any]]:
    return [
        {
            "source_labels": [f"__meta_kubernetes_{kind}_label_{label_name(key)}"],
            "target_label": label_name(key),
            "regex": "(.+)",
            "replacement": "${1}",
        }
        for key in keys
    ]


def operator_relabelings(target: Target, pod_target_labels: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The relabel_configs the operator generates for a ServiceMonitor endpoint (EndpointSlice role).

    `pod_target_labels`: the Prometheus object's own podTargetLabels, which the operator appends to each
    ServiceMonitor's."""
    spec, endpoint = target.monitor["spec"], target.endpoint
    slice_ = "__meta_kubernetes_endpointslice"
    rules: list[dict[str, Any]] = [{"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}]
    rules += _service_selector_rules(spec["selector"])
    if endpoint.get("port"):
        rules.append({"action": "keep", "source_labels": [f"{slice_}_port_name"], "regex": endpoint["port"]})
    else:
        # A name keeps the container port of that name, a number the container port of that number.
        by = "name" if isinstance(endpoint["targetPort"], str) else "number"
        rules.append(
            {
                "action": "keep",
                "source_labels": [f"__meta_kubernetes_pod_container_port_{by}"],
                "regex": str(endpoint["targetPort"]),
            }
        )
    kind_and_name = [f"{slice_}_address_target_kind", f"{slice_}_address_target_name"]
    rules += [
        {"source_labels": kind_and_name, "separator": ";", "regex": f"{kind};(.*)", "replacement": "${1}",
         "target_label": label}
        for kind, label in (("Node", "node"), ("Pod", "pod"))
    ]  # fmt: skip
    rules += [
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
    ]
    if endpoint.get("filterRunning", True):
        rules.append(
            {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"}
        )
    rules += _copied_labels("service", spec.get("targetLabels") or [])
    rules += _copied_labels("pod", [*(spec.get("podTargetLabels") or []), *pod_target_labels])
    rules.append({"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job", "replacement": "${1}"})
    if spec.get("jobLabel"):
        # The Service's label named by jobLabel, when the Service has it, replaces the name-derived job.
        rules += [{**rule, "target_label": "job"} for rule in _copied_labels("service", [spec["jobLabel"]])]
    rules.append({"target_label": "endpoint", "replacement": str(endpoint.get("port") or endpoint["targetPort"])})
    rules += [relabel_config(r) for r in endpoint.get("relabelings") or []]
    return rules


def _job(target: Target, pod_target_labels: Iterable[str]) -> dict[str, Any]:
    """The scrape job's settings, each only where the ServiceMonitor sets it, as the operator writes them."""
    endpoint = target.endpoint
    job: dict[str, Any] = {"job_name": target.job_name, "honor_labels": bool(endpoint.get("honorLabels", False))}
    if endpoint.get("honorTimestamps") is not None:
        job["honor_timestamps"] = bool(endpoint["honorTimestamps"])
    for field, key in (("interval", "scrape_interval"), ("scrapeTimeout", "scrape_timeout"), ("path", "metrics_path"),
                       ("params", "params")):  # fmt: skip
        if endpoint.get(field):
            job[key] = endpoint[field]
    if endpoint.get("scheme"):
        job["scheme"] = str(endpoint["scheme"]).lower()
    job["static_configs"] = []
    job["relabel_configs"] = operator_relabelings(target, pod_target_labels)
    if endpoint.get("metricRelabelings"):
        job["metric_relabel_configs"] = [relabel_config(r) for r in endpoint["metricRelabelings"]]
    return job


def scrape_configs(
    objects: Iterable[Obj],
    host: str = "127.0.0.1",
    local_port: Callable[[Target], int] | None = None,
    interval: str | None = None,
    pod_target_labels: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """One Prometheus scrape job per ServiceMonitor endpoint.

    `local_port` gives the local port a target's process listens on (each local pod has its own metrics
    port; tests run on free ports), default the container port;
    `interval` overrides the declared one (tests compress time); `pod_target_labels` are the Prometheus
    object's (prometheusSpec.podTargetLabels). Everything else comes from the manifests.
    """
    objects = list(objects)
    check_supported(objects)
    jobs: dict[str, dict[str, Any]] = {}
    for target in targets(objects):
        job = jobs.setdefault(target.job_name, _job(target, pod_target_labels))
        if interval:
            job["scrape_interval"] = interval
            if "scrape_timeout" in job and seconds(interval) < seconds(job["scrape_timeout"]):
                # Prometheus refuses a timeout longer than the interval.
                job["scrape_timeout"] = interval
        port = local_port(target) if local_port else target.port
        job["static_configs"].append({"targets": [f"{host}:{port}"], "labels": meta_labels(target)})
    return list(jobs.values())


# promtool waits this long for discovery whatever it finds (its default, 30s, would dominate); static targets
# arrive at once, the margin is for a loaded machine.
DISCOVERY_WAIT = "1s"


def discovered_labels(
    objects: Iterable[Obj], workdir: Path, promtool: str = "promtool", **options: Any
) -> list[dict[str, str]]:
    """The labels Prometheus itself gives each target of the first job after relabelling (what `/api/v1/targets`
    shows), from `promtool check service-discovery` on the jobs `scrape_configs(objects, **options)` writes.

    The one evaluator of the operator's relabelling: the local stack's Prometheus applies the same jobs."""
    jobs = scrape_configs(objects, **options)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "discovery.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "30s"}, "scrape_configs": jobs}))
    command = [promtool, "check", "service-discovery", f"--timeout={DISCOVERY_WAIT}", str(config), jobs[0]["job_name"]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RenderError(f"`{' '.join(command)}` failed: {done.stderr.strip()}")
    return [{k: v for k, v in t["labels"].items() if not k.startswith("__")} for t in json.loads(done.stdout)]
