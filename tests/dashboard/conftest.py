"""Fixtures of the dashboard tests: the alert and recording rules, read from the PrometheusRule manifests."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from declarations.manifests import MANIFESTS


@pytest.fixture(scope="session")
def rules() -> list[dict[str, Any]]:
    # The manifest files themselves, not the kustomize rendering: names and expressions are all these tests need.
    manifests = [yaml.safe_load(path.read_text()) for path in sorted(MANIFESTS.glob("prometheusrule-*.yaml"))]
    assert manifests, f"no prometheusrule-*.yaml under {MANIFESTS}"
    return [rule for manifest in manifests for group in manifest["spec"]["groups"] for rule in group["rules"]]


@pytest.fixture(scope="session")
def rule_exprs(rules: list[dict[str, Any]]) -> dict[str, str]:
    return {rule["alert"]: rule["expr"] for rule in rules if "alert" in rule}
