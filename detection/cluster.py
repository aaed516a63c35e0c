"""The cluster's intervals and the labels its Prometheus gives the app's target, read from the declarations."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from declarations import chart
from declarations.durations import seconds
from declarations.manifests import Obj, one, render, rule_groups
from declarations.scrape import discovered_labels
from detection.scenarios import POD_IP

# -- the cluster's intervals and target labels, from the declarations ---------------------------------------


@dataclass(frozen=True)
class Cluster:
    scrape_interval: str
    evaluation_interval: str
    target_labels: dict[str, str]
    rules: dict[str, Any]

    @property
    def steps(self) -> int:
        """Scrapes per minute."""
        steps = 60 / seconds(self.scrape_interval)
        if steps != int(steps):
            raise ValueError(f"scrape interval {self.scrape_interval} does not divide a minute")
        return int(steps)


def cluster(objects: list[Obj] | None = None) -> Cluster:
    """The intervals and target labels of the app in a cluster: the ServiceMonitor's endpoint and the Prometheus
    object the chart renders (declarations.chart: Helm's render when the chart is available, else the values)."""
    objects = objects if objects is not None else render()
    endpoint = one(objects, "ServiceMonitor")["spec"]["endpoints"][0]
    prometheus = chart.prometheus()
    default_scrape, evaluation = chart.intervals(prometheus)
    # Prometheus falls back to its own scrapeInterval where the ServiceMonitor sets none.
    scrape = endpoint.get("interval") or default_scrape
    return Cluster(scrape, evaluation, target_labels(objects, prometheus), rule_groups(objects))


def target_labels(objects: list[Obj], prometheus: Obj | None = None) -> dict[str, str]:
    """The labels the operator's relabelling gives the app's first target in a cluster, evaluated by Prometheus
    (promtool) on the scrape job the local stack runs, at a pod IP of the cluster's kind."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise RuntimeError("promtool is not on PATH: install Prometheus (Debian: apt-get install prometheus)")
    spec = (prometheus or chart.prometheus()).get("spec") or {}
    with tempfile.TemporaryDirectory(prefix="target-labels-") as tmp:
        found = discovered_labels(
            objects, Path(tmp), promtool, host=POD_IP, pod_target_labels=spec.get("podTargetLabels") or ()
        )
    if not found:
        raise ValueError("the operator's relabelling drops the app's target")
    return found[0]
