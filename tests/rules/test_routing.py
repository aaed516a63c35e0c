"""Every alert reaches its team: each label set an alert can fire with, routed by the real Alertmanager.

An alert's expression is the `or` of its branches (`alerts.rules.Alert.branches`); each branch can produce
its own label set (an `absent()` keeps only its selector's equality matchers, an aggregation only its
`by` labels). Each branch is evaluated by promtool on the input series of the test cases in which the alert
fires (tests/rules/*.test.yaml), so the label sets are what the rules engine really produces; every branch
must produce one somewhere. Each label set, with the alert's own labels and name, then goes through
`amtool config routes test` on the Alertmanager configuration the chart renders into its Secret from
helmfile's values (declarations.chart; the values' `alertmanager.config` where the chart is absent).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.build import alerts
from declarations import chart
from declarations.manifests import RenderError, render, rule_groups
from detection.promtool import got_samples
from tests.availability import unavailable
from tests.manifests.deploy_spec import APP_RECEIVER
from tests.rules.test_rules import RULE_FILE, TEST_FILES

MARK = "routing_check"


@pytest.fixture(scope="module")
def amtool_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("alertmanager") / "alertmanager.yml"
    print(f"\nAlertmanager configuration: {chart.source()}")
    path.write_text(yaml.safe_dump(chart.alertmanager_config()))
    return path


def route(amtool: str, config: Path, labels: dict[str, str]) -> str:
    """The receiver Alertmanager picks for an alert with these labels."""
    done = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={config}", *(f"{k}={v}" for k, v in labels.items())],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def unrouted(amtool: str, config: Path, label_sets: list[dict[str, str]]) -> list[str]:
    """The label sets that do not reach the app's receiver, each with where it goes instead."""
    problems = []
    for labels in label_sets:
        receiver = route(amtool, config, labels)
        if receiver != APP_RECEIVER:
            problems.append(f"{labels} -> {receiver}")
    return problems


def branch_label_sets(
    promtool: str, groups: list[dict[str, Any]], workdir: Path
) -> dict[tuple[str, int], list[dict[str, str]]]:
    """(alert, branch index) -> the label sets promtool evaluates that branch to, on the series of every test
    case in which the alert fires."""
    (workdir / RULE_FILE).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    by_name = {a.alert: a for a in alerts()}
    checks: list[tuple[str, int]] = []
    found: dict[tuple[str, int], list[dict[str, str]]] = {
        (a.alert, i): [] for a in by_name.values() for i in range(len(a.branches))
    }
    for test_file in TEST_FILES:
        spec = yaml.safe_load(test_file.read_text())
        tests = []
        for group in spec["tests"]:
            exprs = []
            for case in group.get("alert_rule_test", []):
                if not case.get("exp_alerts"):
                    continue
                for index, branch in enumerate(by_name[case["alertname"]].branches):
                    # Expecting nothing, promtool reports what the branch gives; the extra label says which
                    # check a sample belongs to.
                    marked = f'label_replace(({branch}), "{MARK}", "{len(checks)}", "", "")'
                    exprs.append({"expr": marked, "eval_time": case["eval_time"], "exp_samples": []})
                    checks.append((case["alertname"], index))
            if exprs:
                kept = {k: v for k, v in group.items() if k not in ("alert_rule_test", "promql_expr_test")}
                tests.append({**kept, "promql_expr_test": exprs})
        if not tests:
            continue
        out = {**spec, "tests": tests}
        (workdir / test_file.name).write_text(yaml.safe_dump(out, sort_keys=False, width=1 << 20))
        done = subprocess.run(
            [promtool, "test", "rules", test_file.name], cwd=workdir, capture_output=True, text=True, timeout=300
        )
        for labels, _ in got_samples(done.stdout + done.stderr):
            labels.pop("__name__", None)  # an alert carries the labels of its sample, never a metric name
            found[checks[int(labels.pop(MARK))]].append(labels)
    return found


@pytest.fixture(scope="module")
def groups() -> list[dict[str, Any]]:
    try:
        return rule_groups(render())["groups"]
    except RenderError as exc:
        unavailable(str(exc))


def test_the_branches_are_the_manifests_expressions(groups: list[dict[str, Any]]) -> None:
    manifest = {r["alert"]: r["expr"] for g in groups for r in g["rules"] if "alert" in r}
    assert manifest == {a.alert: a.expr for a in alerts()}


def test_every_label_set_of_every_alert_reaches_the_team(
    promtool: str, groups: list[dict[str, Any]], amtool: str, amtool_config: Path, tmp_path: Path
) -> None:
    found = branch_label_sets(promtool, groups, tmp_path)
    never = sorted(f"{name} branch {i}" for (name, i), sets in found.items() if not sets)
    assert not never, f"no test case makes these branches produce anything (add one): {never}"
    by_name = {a.alert: a for a in alerts()}
    label_sets = []
    for (name, _), sets in found.items():
        for labels in sets:
            label_sets.append({**labels, "severity": by_name[name].severity, "alertname": name})
    unique = [dict(t) for t in sorted({tuple(sorted(s.items())) for s in label_sets})]
    assert {s["alertname"] for s in unique} == set(by_name), "an alert has no firing test case"
    assert not unrouted(amtool, amtool_config, unique)
    # The absent() branch is the one that had no namespace before: it is among the routed label sets.
    assert {
        "alertname": "WineClassifierDown",
        "job": "wine-classifier",
        "namespace": "ml-serving",
        "severity": "critical",
    } in unique


def test_a_label_set_without_the_namespace_is_caught(amtool: str, amtool_config: Path) -> None:
    # What absent(up{job="wine-classifier"}) produces: the check must report it, routed to `null`.
    bare = {"alertname": "WineClassifierDown", "job": "wine-classifier", "severity": "critical"}
    assert unrouted(amtool, amtool_config, [bare]) == [f"{bare} -> null"]
