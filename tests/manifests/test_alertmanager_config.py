"""The Alertmanager configuration the chart renders into its Secret from helmfile's values (declarations.chart;
the values' `alertmanager.config` without the chart): this app's alerts reach its named receiver, the rest
does not, as the real `amtool` routes them, and the file is a valid Alertmanager configuration (the local
stack runs Alertmanager 0.25 on it)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from declarations import chart
from tests.manifests.deploy_spec import APP_NAMESPACE, APP_RECEIVER
from tests.manifests.kube_logic import all_receiver_refs

# An alert of this app as its rules produce it: the scraped series keep `namespace` (tests/rules/test_routing.py
# routes every label set every alert can fire with).
APP_ALERT = {"alertname": "WineClassifierErrorBudgetBurnFast", "namespace": APP_NAMESPACE, "severity": "critical"}
CASES = [
    (APP_ALERT, APP_RECEIVER),
    # The chart's own Kubernetes alerts about our pods carry the namespace too.
    ({"alertname": "KubePodCrashLooping", "namespace": APP_NAMESPACE, "severity": "warning"}, APP_RECEIVER),
    ({"alertname": "Watchdog", "severity": "none"}, "null"),
    ({"alertname": "KubePodCrashLooping", "namespace": "kube-system", "severity": "warning"}, "null"),
    ({"alertname": "Something", "namespace": "ml-serving-staging"}, "null"),
]


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    print(f"\nAlertmanager configuration: {chart.source()}")
    config = chart.alertmanager_config()
    assert config.get("route") and config.get("receivers"), "alertmanager.config needs a route and receivers"
    return config


@pytest.fixture(scope="module")
def config_file(amtool: str, config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("alertmanager") / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    checked = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return path


@pytest.mark.parametrize(("labels", "receiver"), CASES)
def test_amtool_routes(amtool: str, config_file: Path, labels: dict[str, str], receiver: str) -> None:
    routed = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={config_file}", *(f"{k}={v}" for k, v in labels.items())],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert routed.stdout.strip() == receiver, (labels, routed.stdout, routed.stderr)


def test_every_routed_receiver_is_defined_and_named_receivers_are_used(config: dict[str, Any]) -> None:
    defined = [r["name"] for r in config["receivers"]]
    assert len(defined) == len(set(defined)), "duplicate receiver names"
    assert all_receiver_refs(config["route"]) == set(defined)
    assert APP_RECEIVER in defined
