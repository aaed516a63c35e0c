"""The PrometheusRule, run through the real rules engine.

The rules are extracted from the rendered manifests (the one source) into a plain rule file; `promtool`
checks it and runs every `*.test.yaml` next to this module against it. The remaining tests check the test
files themselves: an alert added without a firing and a silent case, or a recording rule without a value
check, fails here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts import links
from declarations.manifests import ROOT, RenderError, render, rule_groups
from declarations.promql import metric_names
from offcluster.runbooks import github_anchor, html
from tests.availability import unavailable

TESTS_DIR = Path(__file__).resolve().parent
TEST_FILES = sorted(TESTS_DIR.glob("*.test.yaml"))
# The name every test file's `rule_files` uses: the extracted rules are written under it.
RULE_FILE = "rules.yaml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
RUNBOOK_BASE = links.RUNBOOK_URL + "#"
SEVERITIES = {"critical", "warning"}
REQUIRED_ANNOTATIONS = {"summary", "description", "runbook_url", "dashboard_url"}
# Hosts of documentation examples (RFC 2606) and the placeholder repository the links once named.
PLACEHOLDER = re.compile(r"(?i)\bexample\.(com|org|net)\b|github\.com/example/|://example\b")
DASHBOARD = json.loads((ROOT / "manifests" / "dashboards" / "wine-classifier.json").read_text())


@pytest.fixture(scope="module")
def groups() -> list[dict[str, Any]]:
    try:
        extracted = rule_groups(render())
    except RenderError as exc:
        unavailable(str(exc))
    assert extracted["groups"], "the PrometheusRule has no rule groups"
    return extracted["groups"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, groups: list[dict[str, Any]]) -> Path:
    """A directory holding the extracted rule file and a copy of every test file, as they reference it."""
    path = tmp_path_factory.mktemp("rules")
    (path / RULE_FILE).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    for test_file in TEST_FILES:
        shutil.copy(test_file, path / test_file.name)
    return path


def _rules(groups: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for group in groups:
        yield from group["rules"]


def _alerts(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for rule in _rules(groups) if "alert" in rule]


def _records(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for rule in _rules(groups) if "record" in rule]


def _test_groups() -> Iterator[tuple[str, dict[str, Any]]]:
    for test_file in TEST_FILES:
        for group in yaml.safe_load(test_file.read_text())["tests"]:
            yield f"{test_file.name}: {group.get('name', '?')}", group


def _runbook_anchors() -> set[str]:
    return {github_anchor(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*$", RUNBOOKS.read_text(), re.MULTILINE)}


def test_there_are_test_files() -> None:
    assert TEST_FILES, f"no *.test.yaml under {TESTS_DIR}"


def test_promtool_check_rules(promtool: str, workdir: Path) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", RULE_FILE], cwd=workdir, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(promtool: str, workdir: Path, test_file: Path) -> None:
    result = subprocess.run(
        [promtool, "test", "rules", test_file.name], cwd=workdir, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_test_files_load_only_the_extracted_rules(test_file: Path) -> None:
    # Anything else would test rules that are not the manifest's.
    assert yaml.safe_load(test_file.read_text())["rule_files"] == [RULE_FILE]


def test_every_alert_has_a_firing_and_a_silent_case(groups: list[dict[str, Any]]) -> None:
    alert_names = {rule["alert"] for rule in _alerts(groups)}
    firing: set[str] = set()
    silent: set[str] = set()
    problems: list[str] = []
    for where, group in _test_groups():
        for case in group.get("alert_rule_test", []):
            name = case["alertname"]
            if name not in alert_names:
                # Would pass vacuously when silent: a typo or a renamed alert.
                problems.append(f"{where}: tests {name}, which no rule defines")
            expected = case.get("exp_alerts") or []
            if not expected:
                silent.add(name)
                continue
            for alert in expected:
                labels = alert.get("exp_labels") or {}
                annotations = alert.get("exp_annotations") or {}
                if labels.get("severity") not in SEVERITIES:
                    problems.append(f"{where}: {name} expected without a severity label")
                if not set(annotations) >= REQUIRED_ANNOTATIONS:
                    problems.append(f"{where}: {name} expected without all of {sorted(REQUIRED_ANNOTATIONS)}")
            firing.add(name)
    problems += [f"{name} has no case where it fires" for name in sorted(alert_names - firing)]
    problems += [f"{name} has no case where it must stay silent" for name in sorted(alert_names - silent)]
    assert not problems, "\n".join(problems)


def test_every_recording_rule_has_a_value_check(groups: list[dict[str, Any]]) -> None:
    checked: set[str] = set()
    for _, group in _test_groups():
        for case in group.get("promql_expr_test", []):
            if case.get("exp_samples"):
                checked |= metric_names(case["expr"])
    unchecked = sorted({rule["record"] for rule in _records(groups)} - checked)
    assert not unchecked, f"recording rules without a promql_expr_test value check: {unchecked}"


def test_alerts_carry_severity_annotations_and_an_existing_runbook(groups: list[dict[str, Any]]) -> None:
    anchors = _runbook_anchors()
    problems: list[str] = []
    for rule in _alerts(groups):
        name = rule["alert"]
        if rule.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity must be one of {sorted(SEVERITIES)}")
        annotations = rule.get("annotations", {})
        missing = REQUIRED_ANNOTATIONS - set(annotations)
        if missing:
            problems.append(f"{name}: missing annotations {sorted(missing)}")
        # The values that matter: the measured value, or for an absence the labels of what is missing.
        if not re.search(r"\$(value|labels)\b", annotations.get("description", "")):
            problems.append(f"{name}: the description quotes neither $value nor $labels")
        url = annotations.get("runbook_url", "")
        if not url.startswith(RUNBOOK_BASE):
            problems.append(f"{name}: runbook_url {url!r} does not point into docs/runbooks.md")
        elif url.removeprefix(RUNBOOK_BASE) not in anchors:
            problems.append(f"{name}: docs/runbooks.md has no section #{url.removeprefix(RUNBOOK_BASE)}")
    assert not problems, "\n".join(problems)


def test_no_link_names_a_placeholder_host(groups: list[dict[str, Any]]) -> None:
    found = [
        f"{rule['alert']}: {key}={value!r}"
        for rule in _alerts(groups)
        for key, value in rule["annotations"].items()
        if PLACEHOLDER.search(value)
    ]
    assert not found, "\n".join(found)
    assert not PLACEHOLDER.search(json.dumps(DASHBOARD["links"])), DASHBOARD["links"]


def test_the_served_runbooks_carry_every_alerts_anchor(groups: list[dict[str, Any]]) -> None:
    # The default runbook_url is the local stack's rendering of docs/runbooks.md: GitHub's anchors must exist
    # there too, or the default link lands at the top of the page.
    ids = set(re.findall(r'<h\d id="([^"]+)"', html(RUNBOOKS.read_text())))
    for rule in _alerts(groups):
        assert rule["annotations"]["runbook_url"].split("#", 1)[1] in ids, rule["alert"]


def test_dashboard_urls_open_the_provisioned_dashboard_on_the_alerts_panel(groups: list[dict[str, Any]]) -> None:
    titles = {panel["id"]: panel["title"] for panel in DASHBOARD["panels"]}
    for rule in _alerts(groups):
        url = " ".join(rule["annotations"]["dashboard_url"].split())
        assert url.startswith(f"{links.GRAFANA_URL}/d/{DASHBOARD['uid']}?viewPanel="), (rule["alert"], url)
        assert "var-namespace={{ $labels.namespace }}&var-job={{ $labels.job }}" in url, url
        panel = links.PANELS[rule["alert"]]
        wanted = set(panel.values()) if isinstance(panel, dict) else {panel}
        ids = {int(i) for i in re.findall(r"(?:viewPanel=|\}\})(\d+)", url)}
        assert {titles[i] for i in ids} == wanted, (rule["alert"], url)


def test_every_runbook_section_belongs_to_an_alert(groups: list[dict[str, Any]]) -> None:
    sections = set(re.findall(r"^## (\S+)\s*$", RUNBOOKS.read_text(), re.MULTILINE))
    assert sections == {rule["alert"] for rule in _alerts(groups)}


def test_objectives_are_stated_once(groups: list[dict[str, Any]]) -> None:
    objectives = [rule for rule in _records(groups) if rule["record"] == "slo:objective:ratio"]
    assert {rule["labels"]["slo"] for rule in objectives} == {"availability", "latency"}
    literals = {re.fullmatch(r"vector\(([0-9.]+)\)", rule["expr"].strip()).group(1) for rule in objectives}
    for rule in _rules(groups):
        if rule.get("record") != "slo:objective:ratio":
            for literal in literals:
                assert not re.search(rf"(?<![\d.]){re.escape(literal)}(?![\d.])", rule["expr"]), (
                    f"{rule.get('alert') or rule.get('record')} repeats the objective {literal}: "
                    "use slo:objective:ratio"
                )


def test_every_selector_is_scoped_to_the_job(groups: list[dict[str, Any]]) -> None:
    # A bare `http_requests_total` would fold every service of the cluster into these SLOs.
    for rule in _rules(groups):
        for name in metric_names(rule["expr"]):
            if ":" in name:
                continue  # recorded by these rules, already scoped
            for selector in re.findall(rf"(?<![\w:]){re.escape(name)}(\{{[^}}]*\}})?", rule["expr"]):
                assert 'job="wine-classifier"' in selector, (
                    f'{rule.get("alert") or rule.get("record")}: {name} without job="wine-classifier"'
                )
