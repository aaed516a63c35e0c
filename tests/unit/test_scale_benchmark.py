"""The parts of benchmarks.scale that decide what its Prometheus sees, without running it (minutes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.metrics import MODEL_INPUT_FEATURE_BIN_TOTAL, MODEL_REFERENCE_FEATURE_BIN_RATIO
from benchmarks.light_targets import LightTarget, parse_exposition
from benchmarks.prometheus_run import cluster_intervals, drift_panel_expr, prometheus_config
from declarations.manifests import RenderError, render
from tests.availability import unavailable

EXPOSITION = f"""# HELP {MODEL_INPUT_FEATURE_BIN_TOTAL} Input values seen.
# TYPE {MODEL_INPUT_FEATURE_BIN_TOTAL} counter
{MODEL_INPUT_FEATURE_BIN_TOTAL}{{feature="f0",bin="0"}} 10.0
{MODEL_INPUT_FEATURE_BIN_TOTAL}{{feature="f0",bin="1"}} 0.0
# HELP {MODEL_REFERENCE_FEATURE_BIN_RATIO} Share of training rows.
# TYPE {MODEL_REFERENCE_FEATURE_BIN_RATIO} gauge
{MODEL_REFERENCE_FEATURE_BIN_RATIO}{{feature="f0",bin="0"}} 0.25
# HELP model_batch_rows Rows per request.
# TYPE model_batch_rows histogram
model_batch_rows_bucket{{le="1.0"}} 4.0
model_batch_rows_sum 4.0
model_batch_rows_count 4.0
"""


def _values(text: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] != "#"}


def test_counters_and_histograms_grow_gauges_and_empty_bins_stay(monkeypatch):
    comments, lines = parse_exposition(EXPOSITION)
    assert [line.cumulative for line in lines] == [True, True, False, True, True, True]
    target = LightTarget(comments, lines, growth=0.01)
    monkeypatch.setattr("benchmarks.light_targets.time.monotonic", lambda: target.started + 100)
    grown = _values(target.body().decode())
    assert grown[f'{MODEL_INPUT_FEATURE_BIN_TOTAL}{{feature="f0",bin="0"}}'] == pytest.approx(20.0)
    assert grown[f'{MODEL_INPUT_FEATURE_BIN_TOTAL}{{feature="f0",bin="1"}}'] == 0.0
    assert grown[f'{MODEL_REFERENCE_FEATURE_BIN_RATIO}{{feature="f0",bin="0"}}'] == 0.25
    assert grown["model_batch_rows_count"] == pytest.approx(8.0)
    assert target.body().decode().count("# TYPE") == 3


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    try:
        return render()
    except RenderError as exc:
        unavailable(str(exc))


def test_every_pod_is_a_target_of_the_operators_job_at_the_clusters_intervals(objects):
    intervals = cluster_intervals(objects)
    config = prometheus_config(objects, 5, list(range(20000, 20005)), Path("rules.yaml"), intervals)
    (job,) = config["scrape_configs"]
    addresses = [t for static in job["static_configs"] for t in static["targets"]]
    pods = {static["labels"]["__meta_kubernetes_pod_name"] for static in job["static_configs"]}
    assert addresses == [f"127.0.0.1:{port}" for port in range(20000, 20005)]
    assert len(pods) == 5
    assert job["scrape_interval"] == intervals.scrape == "15s"
    assert config["global"]["evaluation_interval"] == intervals.evaluation == "30s"


def test_the_drift_panel_query_is_the_dashboards():
    expr = drift_panel_expr({"namespace": "ml-serving", "job": "wine-classifier"})
    assert "model_input_psi" in expr and "$" not in expr
