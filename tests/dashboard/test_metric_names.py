"""Every metric name a panel or a rule uses exists: exported by the app, or recorded by a rule."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

import app.metrics
import dashboard
import loadtest.metrics
from declarations.manifests import one, render
from declarations.promql import metric_names

# Series Prometheus makes itself.
SYNTHETIC = {"up", "ALERTS"}
SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_names() -> set[str]:
    """The sample names app/metrics.py's collectors expose (`_created` samples do not exist in multiprocess
    mode, so nothing may use them), the workers' and the master's own."""
    names: set[str] = set()
    for value in vars(app.metrics).values():
        if isinstance(value, (MetricWrapperBase, app.metrics.MasterCounter)):
            for family in value.describe():
                names |= {family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type]}
    return names


def locust_names() -> set[str]:
    """The sample names the locust master exports (loadtest/exporter.py builds its families from these)."""
    return {v for k, v in vars(loadtest.metrics).items() if k.startswith("LOCUST_")}


@pytest.fixture(scope="module")
def known(rules: list[dict[str, Any]]) -> set[str]:
    return exported_names() | locust_names() | {rule["record"] for rule in rules if "record" in rule} | SYNTHETIC


def test_exported_names_match_the_constants() -> None:
    # The constants are what every other module uses; the collectors are what is actually exported.
    constants = {v for k, v in vars(app.metrics).items() if k.isupper() and isinstance(v, str) and "_" in v}
    names = exported_names()
    for constant in constants - {app.metrics.UNMATCHED_ROUTE, app.metrics.OTHER_METHOD}:
        assert any(name == constant or name.startswith(constant + "_") for name in names), constant


def test_every_rule_uses_known_metrics(rules: list[dict[str, Any]], known: set[str]) -> None:
    for rule in rules:
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"{rule.get('alert') or rule.get('record')} uses unknown metrics {sorted(unknown)}"


def test_every_panel_uses_known_metrics(known: set[str]) -> None:
    for title, expr in dashboard.queries("ml-serving", "wine-classifier"):
        unknown = metric_names(expr) - known
        assert not unknown, f"panel {title!r} uses unknown metrics {sorted(unknown)}"


def test_the_autoscaling_query_uses_known_metrics(known: set[str]) -> None:
    """KEDA scales on the ScaledObject's PromQL: a metric renamed in app/metrics.py would leave it empty."""
    scaled = one(render(), "ScaledObject")
    queries = [t["metadata"]["query"] for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
    assert queries
    for query in queries:
        names = metric_names(query)
        assert names and not names - known, f"ScaledObject query uses unknown metrics {sorted(names - known)}"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (namespace, job) (rate(http_requests_total{job="x", route="/predict"}[5m]))', {"http_requests_total"}),
        ("a:b:rate5m / on (job, slo) group_left () (1 - slo:objective:ratio)", {"a:b:rate5m", "slo:objective:ratio"}),
        ('histogram_quantile(0.95, sum by (le) (rate(x_bucket{le="0.25"}[$__rate_interval])))', {"x_bucket"}),
        ("clamp_min(x, 1e-4) > bool 0.25 or vector(1) unless y offset 5m", {"x", "y"}),
        ('ALERTS{alertstate="firing", namespace="$namespace"} or absent(up{job="j"}) > Inf', {"ALERTS", "up"}),
        ("sum(rate(m[1h])) by (feature) * 3600 >= 1000", {"m"}),
    ],
)
def test_the_tokenizer_finds_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
