"""Prometheus and Alertmanager configuration for the local stack, derived from the project's declarations.

- scrape jobs: from the ServiceMonitors (`declarations.scrape`), the load test's (loadtest/) included: its
  master listens on the `locust` port while a run is going;
- rule file: the PrometheusRule's groups;
- intervals, timeout and podTargetLabels: the chart's Prometheus object (`declarations.chart`);
- Alertmanager routing: the configuration the chart renders into its Secret from helmfile.yaml's values
  (`declarations.chart`), with every receiver's integrations replaced by a webhook to the local sink
  (`/<receiver name>`), so a test sees which route an alert took.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from alerts.links import DEFAULT_GRAFANA_URL, DEFAULT_RUNBOOK_URL
from declarations import chart, ports
from declarations.durations import seconds
from declarations.helm import HELMFILE
from declarations.manifests import Obj, RenderError, rule_groups
from declarations.scrape import scrape_configs
from declarations.targets import targets
from offcluster.pods import local_pods, local_port


@dataclass(frozen=True)
class Ports:
    """Local ports. `app` and `metrics` default to what the Deployment declares (None: as declared); `app` is
    shared by every pod, `metrics` is the first pod's (pod i listens on `metrics` + i)."""

    app: int | None = None
    metrics: int | None = None
    prometheus: int = ports.PROMETHEUS
    alertmanager: int = ports.ALERTMANAGER
    webhook: int = ports.WEBHOOK
    grafana: int = ports.GRAFANA
    # The locust master's web UI and /metrics.
    locust: int = ports.LOCUST


def app_container(objects: list[Obj]) -> Obj:
    """The container the ServiceMonitor's first target points at: the model server."""
    found = targets(objects)
    if not found:
        raise RenderError("no ServiceMonitor endpoint resolves to a container")
    return found[0].container


def app_environment(objects: list[Obj], ports: Ports) -> dict[str, str]:
    """The container's declared environment (literal values), with the ports remapped where asked."""
    container = app_container(objects)
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    if ports.app is not None:
        env["PORT"] = str(ports.app)
    if ports.metrics is not None:
        env["METRICS_PORT"] = str(ports.metrics)
    return env


@dataclass(frozen=True)
class StackConfig:
    prometheus: dict[str, Any]
    rules: dict[str, Any]
    alertmanager: dict[str, Any]


def local_alertmanager_config(chart_config: dict[str, Any], webhook_url: str) -> dict[str, Any]:
    """The chart's Alertmanager configuration with every receiver sending to the local webhook sink."""
    config = copy.deepcopy(chart_config)
    if not config or "route" not in config:
        raise RenderError("the chart's Alertmanager configuration (helmfile values alertmanager.config) has no route")
    # Template files live in the chart's Secret; the local webhook needs none.
    config.pop("templates", None)
    for receiver in config.get("receivers", []):
        name = receiver["name"]
        for key in [k for k in receiver if k.endswith("_configs")]:
            del receiver[key]
        receiver["webhook_configs"] = [{"url": f"{webhook_url}/{name}", "send_resolved": True}]
    return config


def build(
    objects: list[Obj],
    ports: Ports,
    rules_file: Path,
    scrape_interval: str | None = None,
    evaluation_interval: str | None = None,
    helmfile: Path = HELMFILE,
    loadtest_objects: Sequence[Obj] = (),
) -> StackConfig:
    prometheus_object = chart.prometheus(helmfile=helmfile)
    spec = prometheus_object.get("spec") or {}
    declared_interval, declared_evaluation = chart.intervals(prometheus_object)
    evaluation = evaluation_interval or declared_evaluation
    # The operator's global section: the Prometheus object's interval, and its timeout only when set.
    interval = scrape_interval or declared_interval
    global_ = {"scrape_interval": interval}
    if spec.get("scrapeTimeout"):
        global_["scrape_timeout"] = min(spec["scrapeTimeout"], interval, key=seconds)
    prometheus = {
        "global": {**global_, "evaluation_interval": evaluation},
        "rule_files": [str(rules_file)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ports.alertmanager}"]}]}]},
        "scrape_configs": scrape_configs(
            objects,
            local_port=local_port(local_pods(objects, ports.app, ports.metrics)),
            interval=scrape_interval,
            # The Prometheus object's podTargetLabels apply to every ServiceMonitor, after each one's own.
            pod_target_labels=spec.get("podTargetLabels") or (),
        ),
    }
    if loadtest_objects:
        # Read apart from the app's objects: the locust pods are not gunicorn pods (offcluster.pods). Its one
        # local process, the master of a run, listens on the locust port.
        prometheus["scrape_configs"] += scrape_configs(
            list(loadtest_objects),
            local_port=lambda _target: ports.locust,
            interval=scrape_interval,
            pod_target_labels=spec.get("podTargetLabels") or (),
        )
    return StackConfig(
        prometheus=prometheus,
        rules=local_links(rule_groups(objects), ports),
        alertmanager=local_alertmanager_config(
            chart.alertmanager_config(helmfile=helmfile), f"http://127.0.0.1:{ports.webhook}"
        ),
    )


def local_links(rules: dict[str, Any], ports: Ports) -> dict[str, Any]:
    """The rules with the default link bases (alerts/links.py) moved to this stack's ports, so that a stack on
    other ports still links to its own runbook page and Grafana. Links set to anything else are kept."""
    moved = {
        DEFAULT_RUNBOOK_URL: f"http://127.0.0.1:{ports.webhook}/runbooks",
        DEFAULT_GRAFANA_URL + "/": f"http://127.0.0.1:{ports.grafana}/",
    }
    for group in rules["groups"]:
        for rule in group["rules"]:
            for key, value in (rule.get("annotations") or {}).items():
                for default, local in moved.items():
                    if value.startswith(default):
                        rule["annotations"][key] = local + value[len(default) :]
    return rules


def write(built: StackConfig, prometheus_file: Path, rules_file: Path, alertmanager_file: Path) -> None:
    for path, content in (
        (prometheus_file, built.prometheus),
        (rules_file, built.rules),
        (alertmanager_file, built.alertmanager),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(content, sort_keys=False))
