"""Fixtures of the dashboard tests: the alert and recording rules, read from the PrometheusRule manifest."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from offcluster.manifests import MANIFESTS


@pytest.fixture(scope="session")
def rules() -> list[dict[str, Any]]:
    # The manifest file itself, not the kustomize rendering: names and expressions are all these tests need.
    manifest = yaml.safe_load((MANIFESTS / "prometheusrule.yaml").read_text())
    return [rule for group in manifest["spec"]["groups"] for rule in group["rules"]]


@pytest.fixture(scope="session")
def rule_exprs(rules: list[dict[str, Any]]) -> dict[str, str]:
    return {rule["alert"]: rule["expr"] for rule in rules if "alert" in rule}
