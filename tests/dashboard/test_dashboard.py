"""The generated dashboard: committed as generated, and every panel complete and scoped to the variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from grafana_foundation_sdk.models import units

import dashboard
import loadtest.metrics
from dashboard.__main__ import main
from dashboard.rows import drift, quality, slo, traffic
from dashboard.rows import loadtest as loadtest_row
from dashboard.rows import model as model_row

DEFAULT_TITLES = {"", "Panel Title", "New panel"}
ROW_TITLES = ["Traffic", "SLO", "Model", "Drift", "Canary against stable", "Alerts", "Load test"]
# The locust master's series: its own job (the loadtest Service), in the app's namespace.
LOCUST_NAMES = {v for k, v in vars(loadtest.metrics).items() if k.startswith("LOCUST_")}
LOCUST_JOB = f'job="{loadtest_row.LOCUST_JOB}"'
# A vector selector: a metric name and its matchers (the tokenizer's job is names; this one's is matchers).
SELECTOR = re.compile(r"(?<![\w:$])([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    return dashboard.to_dict()


@pytest.fixture(scope="module")
def panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    return dashboard.panels(model)


def test_committed_json_is_what_the_generator_produces() -> None:
    assert dashboard.OUTPUT.read_text() == dashboard.render(), "run `python -m dashboard` and commit the result"


def test_generation_is_deterministic() -> None:
    assert dashboard.render() == dashboard.render()


def test_check_flag_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "dashboard.json"
    stale.write_text("{}\n")
    assert main(["--check", "--output", str(stale)]) == 1
    assert main(["--output", str(stale)]) == 0
    assert main(["--check", "--output", str(stale)]) == 0


def test_identity(model: dict[str, Any]) -> None:
    assert model["uid"] == dashboard.UID
    assert model["title"]
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_rows_in_order(model: dict[str, Any]) -> None:
    assert [p["title"] for p in model["panels"] if p["type"] == "row"] == ROW_TITLES


def test_variables(model: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert set(variables) == {"datasource", "namespace", "job"}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "job"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert variables[name]["query"].startswith("label_values(")
    # Jobs are offered for the chosen namespace only.
    assert '"$namespace"' in variables["job"]["query"]


def test_every_panel_has_a_title_a_unit_and_queries(panels: list[dict[str, Any]]) -> None:
    titles = [p.get("title", "") for p in panels]
    assert not set(titles) & DEFAULT_TITLES
    assert len(titles) == len(set(titles)), "two panels with the same title cannot be told apart"
    for panel in panels:
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']}: no unit"
        assert panel.get("description"), f"{panel['title']}: no description"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel.get("targets"), f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert target.get("expr"), f"{panel['title']}: empty query"
            assert target.get("legendFormat"), f"{panel['title']}: a query without a legend"


def test_every_unit_is_one_grafana_knows(panels: list[dict[str, Any]]) -> None:
    # A misspelt unit is not an error in Grafana: the panel silently shows bare numbers.
    known = {value for name, value in vars(units).items() if not name.startswith("_") and isinstance(value, str)}
    for panel in panels:
        unit = panel["fieldConfig"]["defaults"]["unit"]
        assert unit in known or unit.startswith("suffix:"), f"{panel['title']}: unknown unit {unit!r}"


def test_time_series_panels_show_a_legend(panels: list[dict[str, Any]]) -> None:
    for panel in panels:
        if panel["type"] == "timeseries":
            assert panel["options"]["legend"]["showLegend"], panel["title"]


def test_every_query_is_scoped_to_the_variables(panels: list[dict[str, Any]]) -> None:
    for panel in panels:
        for target in panel["targets"]:
            expr = target["expr"]
            selectors = SELECTOR.findall(expr)
            assert selectors, f"{panel['title']}: no label filter in {expr}"
            for name, matchers in selectors:
                job = LOCUST_JOB if name in LOCUST_NAMES else 'job="$job"'
                assert job in matchers, f"{panel['title']}: {name} without {job}"
                if name != "ALERTS":
                    assert 'namespace="$namespace"' in matchers, f"{panel['title']}: {name} without namespace"
            assert 'namespace="$namespace"' in expr, f"{panel['title']}: {expr} ignores $namespace"


def test_drift_panels_draw_the_psi_thresholds(panels: list[dict[str, Any]]) -> None:
    psi_panels = [p for p in panels if any(drift.FEATURE_PSI in t["expr"] for t in p["targets"])]
    assert psi_panels
    for panel in psi_panels:
        steps = [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]
        assert steps == [None, drift.PSI_WARNING, drift.PSI_CRITICAL], panel["title"]
        if panel["type"] == "timeseries":
            assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"


def test_drawn_thresholds_are_the_alert_thresholds(rule_exprs: dict[str, str]) -> None:
    expected = {
        "WineClassifierInputDriftHigh": f"> {drift.PSI_CRITICAL}",
        "WineClassifierInputDriftModerate": f"> {drift.PSI_WARNING}",
        "WineClassifierHttp5xxRatioHigh": f"> {traffic.ERROR_RATIO_ALERT}",
        "WineClassifierLatencyP95High": f"> {traffic.P95_ALERT_SECONDS}",
        "WineClassifierConfidenceLow": f"< {model_row.CONFIDENCE_ALERT}",
        "WineClassifierErrorBudgetBurnFast": f"> {slo.FAST_BURN}",
        "WineClassifierAccuracyLow": f"- {quality.ACCURACY_ALERT_DROP}",
    }
    for alert, comparison in expected.items():
        assert comparison in rule_exprs[alert], f"{alert} no longer alerts at {comparison}: update dashboard/rows/"
    assert f">= {drift.MODEL_MIN_ROWS}" in rule_exprs["WineClassifierConfidenceLow"]
    assert f">= {quality.ACCURACY_MIN_FEEDBACK}" in rule_exprs["WineClassifierAccuracyLow"]


def test_queries_fill_in_the_variables(panels: list[dict[str, Any]]) -> None:
    result = dashboard.queries("ml-serving", "wine-classifier", rate_interval="2m")
    assert len(result) == sum(len(p["targets"]) for p in panels)
    assert {title for title, _ in result} == {p["title"] for p in panels}
    for title, expr in result:
        assert "$" not in expr, f"{title}: unsubstituted variable in {expr}"
        assert 'job="wine-classifier"' in expr or LOCUST_JOB in expr
    assert any("[2m]" in expr for _, expr in result)
