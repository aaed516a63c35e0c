"""`python -m offcluster status`: what the ScaledObject's triggers read from the running local stack, and the
replica count KEDA's HPA would choose from each (declarations.autoscaling holds the arithmetic)."""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from declarations.autoscaling import desired_replicas, prometheus_triggers, replica_bounds
from declarations.manifests import Obj


def group_cpu_seconds(pgid: int) -> float:
    """CPU time of every process in a process group (a local pod: its gunicorn master and workers), reaped
    members included (their time is in their parent's cutime/cstime)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command: state ppid pgrp ... utime(12) stime(13) cutime(14) cstime(15), 0-based here.
        if int(fields[2]) == pgid:
            total += sum(int(f) for f in fields[11:15])
    return total / tick


def _query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)["data"]["result"]


def _cpu_request_cores(deployment: Obj) -> float:
    text = str(deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"])
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def status_lines(
    prometheus_url: str, objects: list[Obj], pods: dict[str, int], sample_seconds: float = 2.0
) -> list[str]:
    """What the ScaledObject's triggers read from the running stack and the replica count each gives: the
    query from the local Prometheus (what KEDA would read from the chart's), CPU from the pods' processes
    over `sample_seconds`, against the container's CPU request (as the HPA's Utilization target reads it)."""
    scaled = next((o for o in objects if o.get("kind") == "ScaledObject"), None)
    if scaled is None:
        return []
    bounds = replica_bounds(scaled)
    target = scaled["spec"]["scaleTargetRef"]["name"]
    meta = scaled["metadata"]
    lines = [
        f"autoscaling (ScaledObject {meta.get('namespace')}/{meta['name']}, {bounds[0]}..{bounds[1]} pods; "
        "what its HPA would choose now):"
    ]
    for trigger in prometheus_triggers(scaled):
        try:
            result = _query(prometheus_url, trigger.query)
        except (OSError, ValueError) as exc:
            lines.append(f"  request rate: Prometheus did not answer ({exc.__class__.__name__})")
            continue
        if len(result) > 1:
            lines.append(f"  request rate: the query returned {len(result)} series, KEDA needs one")
            continue
        # No series yet (no request since the pods started): KEDA reads 0 (its ignoreNullValues default).
        value = float(result[0]["value"][1]) if result else 0.0
        pods_wanted = desired_replicas(value, trigger.threshold, bounds)
        lines.append(
            f"  request rate: {value:.2f} req/s -> {pods_wanted} pods (ceil({value:.2f} / {trigger.threshold:g}))"
        )
    deployment = next((o for o in objects if o.get("kind") == "Deployment" and o["metadata"]["name"] == target), None)
    for trigger in scaled["spec"].get("triggers") or []:
        if trigger.get("type") != "cpu" or deployment is None or not pods:
            continue
        per_pod = _cpu_request_cores(deployment) * int(trigger["metadata"]["value"]) / 100
        before, started = sum(map(group_cpu_seconds, pods.values())), time.monotonic()
        time.sleep(sample_seconds)
        cores = (sum(map(group_cpu_seconds, pods.values())) - before) / (time.monotonic() - started)
        pods_wanted = desired_replicas(cores, per_pod, bounds)
        lines.append(
            f"  CPU: {cores * 1000:.0f}m over {len(pods)} pods in {sample_seconds:g} s -> {pods_wanted} pods "
            f"(ceil({cores * 1000:.0f}m / {per_pod * 1000:.0f}m))"
        )
    return lines
