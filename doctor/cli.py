"""`python -m doctor` (also `python -m offcluster doctor`): why a ServiceMonitor yields no target, hop by hop.

    python -m doctor [DIR]                 # render DIR (a kustomization, default manifests/)
    python -m doctor --live                # the same walk on the cluster kubectl points at
    python -m doctor --from-json FILE      # ... on a saved `kubectl get ... -A -o json` list

For every ServiceMonitor (and PodMonitor) endpoint it walks the chain the operator, the API server and the
CNI follow, one line per hop, and names the fix of a broken one; then each PrometheusRule against the
Prometheus `ruleSelector`, and each dashboard ConfigMap against the Grafana sidecar. Offline, the Prometheus
object and the sidecar are the chart's as helmfile.yaml deploys them (declarations.chart). Exit status: 0 when
every hop passed, 1 when one is broken, 2 when the input cannot be read.

This module reads the input and prints; doctor.walk walks the hops, doctor.discovery holds their rules.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from declarations import chart
from declarations.autoscaling import chart_services
from declarations.manifests import MANIFESTS, RenderError, render
from doctor.discovery import Obj, ref, show_selector
from doctor.report import Cluster, Report
from doctor.walk import diagnose

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
    # What a ScaledObject's scaleTargetRef may name.
    "deployments.apps",
    "statefulsets.apps",
)
# Kinds of an add-on the cluster may not have: asked for apart, so that a cluster without KEDA is still walked.
OPTIONAL_KINDS = ("scaledobjects.keda.sh",)
# The grafana chart's dashboard sidecar container, and the env k8s-sidecar reads its selection from.
SIDECAR_CONTAINER = "grafana-sc-dashboard"


class InputError(Exception):
    """Input the doctor cannot read: exit 2 with this one line."""


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
            "rule/dashboard/ScaledObject object(s) picked up"
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
    services = chart_services(rendered, prometheus, chart.prometheus_pod_labels(prometheus))
    shown = directory.relative_to(Path.cwd()) if directory.is_relative_to(Path.cwd()) else directory
    origin = f"{shown} (kubectl kustomize); chart objects: {chart.source()}"
    return Cluster(objects, [prometheus], sidecar, live=False, origin=origin, prometheus_services=services)


def live_objects(from_json: Path | None) -> tuple[list[Obj], str]:
    if from_json is not None:
        try:
            texts = [from_json.read_text()]
        except OSError as exc:
            raise InputError(f"cannot read {from_json}: {exc.strerror}") from None
        origin = f"{from_json} (saved kubectl get -o json)"
    else:
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise InputError("kubectl is not on PATH: --live needs it (or --from-json FILE)")
        texts, origin = [_kubectl_get(kubectl, LIVE_KINDS)], "the cluster of kubectl's current context"
        for kind in OPTIONAL_KINDS:
            try:
                texts.append(_kubectl_get(kubectl, (kind,)))
            except KindMissing:
                origin += f" (no {kind}: its CRD is not installed)"
    try:
        documents = [json.loads(text) for text in texts]
    except json.JSONDecodeError as exc:
        raise InputError(f"{from_json or 'kubectl output'} is not JSON: {exc}") from None
    return _items(documents), origin


class KindMissing(InputError):
    """The API server has no such resource type: an add-on whose CRD is not installed."""


def _kubectl_get(kubectl: str, kinds: tuple[str, ...]) -> str:
    command = [kubectl, "get", ",".join(kinds), "--all-namespaces", "-o", "json"]
    # No stdin: kubectl would otherwise stop to ask for a username when the kubeconfig has no credentials.
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise InputError("`kubectl get` did not answer within 120 s") from None
    if result.returncode != 0:
        # kubectl's own summary comes last, after the client library's log lines.
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        missing = "doesn't have a resource type" in last
        raise (KindMissing if missing else InputError)(f"`kubectl get` failed: {last}")
    return result.stdout


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
        prog="python -m doctor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
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
