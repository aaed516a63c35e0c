"""The shapes a rule group is made of, and the names and selectors every group shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from alerts import links
from declarations.paths import MANIFESTS

# Both objects name the app and the release label the chart's Prometheus selects rules by.
SERVICE = yaml.safe_load((MANIFESTS / "service.yaml").read_text())
MONITOR = yaml.safe_load((MANIFESTS / "servicemonitor.yaml").read_text())
JOB = SERVICE["metadata"]["name"]
NAMESPACE = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["namespace"]
RELEASE_LABELS = {k: v for k, v in MONITOR["metadata"]["labels"].items() if k == "release"}
# What every aggregation keeps: the labels the ServiceMonitor sets. Per-pod labels are dropped so that N
# replicas give one answer, and `namespace` survives so that Alertmanager routes the alert to its team.
KEEP = "namespace, job"


def sel(metric: str, **matchers: str) -> str:
    """`metric{job="wine-classifier", ...}`; a value starting with `~` is a regex match."""
    parts = [f'job="{JOB}"'] + [f'{k}=~"{v[1:]}"' if v.startswith("~") else f'{k}="{v}"' for k, v in matchers.items()]
    return f"{metric}{{{', '.join(parts)}}}"


@dataclass(frozen=True)
class Record:
    record: str
    expr: str
    labels: dict[str, str] = field(default_factory=dict)

    def rule(self) -> dict[str, Any]:
        out: dict[str, Any] = {"record": self.record, "expr": _block(self.expr)}
        if self.labels:
            out["labels"] = dict(self.labels)
        return out


@dataclass(frozen=True)
class Alert:
    """An alert whose expression is the `or` of its branches: each branch is one way it can fire, with its own
    label set (tests route every branch's labels through Alertmanager)."""

    alert: str
    branches: tuple[str, ...]
    severity: str
    summary: str
    description: str
    for_: str | None = None

    @property
    def expr(self) -> str:
        if len(self.branches) == 1:
            return _block(self.branches[0])
        return _block("\nor\n".join(f"(\n{_indent(b.strip())}\n)" for b in self.branches))

    def rule(self) -> dict[str, Any]:
        out: dict[str, Any] = {"alert": self.alert, "expr": self.expr}
        if self.for_:
            out["for"] = self.for_
        out["labels"] = {"severity": self.severity}
        out["annotations"] = {
            "summary": self.summary,
            "description": " ".join(self.description.split()),
            "runbook_url": links.runbook_url(self.alert),
            "dashboard_url": links.dashboard_url(self.alert),
        }
        return out


@dataclass(frozen=True)
class Concern:
    """One PrometheusRule object: one rule group, recordings first, then the alerts reading them. Rules of a
    group run in order within one evaluation, so an alert sees this evaluation's recordings; a recording
    read from another group would lag it by an evaluation interval."""

    name: str
    title: str
    rules: tuple[Record | Alert, ...]

    @property
    def file(self) -> Path:
        return MANIFESTS / f"prometheusrule-{self.name}.yaml"

    def alerts(self) -> list[Alert]:
        return [r for r in self.rules if isinstance(r, Alert)]

    def manifest(self) -> dict[str, Any]:
        return {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {
                "name": f"{JOB}-{self.name}",
                "namespace": NAMESPACE,
                "labels": {"app.kubernetes.io/name": JOB, **RELEASE_LABELS},
            },
            "spec": {"groups": [{"name": f"{JOB}.{self.name}", "rules": [r.rule() for r in self.rules]}]},
        }


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.splitlines())


def _block(expr: str) -> str:
    expr = "\n".join(line.rstrip() for line in expr.strip().splitlines())
    return expr + "\n" if "\n" in expr else expr
