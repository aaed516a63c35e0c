"""alertmanager.config from the helmfile values: this app's alerts reach its named receiver, the rest does not,
and the file is a valid Alertmanager configuration (the local stack runs Alertmanager 0.25 on it)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.manifests.deploy_spec import APP_NAMESPACE, APP_RECEIVER
from tests.manifests.kube_logic import all_receiver_refs, parse_matcher, receivers_for

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
def config(values: dict[str, Any]) -> dict[str, Any]:
    config = values["alertmanager"]["config"]
    assert config.get("route") and config.get("receivers"), "alertmanager.config needs a route and receivers"
    return config


@pytest.mark.parametrize(("labels", "receiver"), CASES)
def test_routing(config: dict[str, Any], labels: dict[str, str], receiver: str) -> None:
    assert receivers_for(config["route"], labels) == [receiver]


def test_every_routed_receiver_is_defined_and_named_receivers_are_used(config: dict[str, Any]) -> None:
    defined = [r["name"] for r in config["receivers"]]
    assert len(defined) == len(set(defined)), "duplicate receiver names"
    assert all_receiver_refs(config["route"]) == set(defined)
    assert APP_RECEIVER in defined


def test_routing_walk_follows_alertmanager_rules() -> None:
    tree = {
        "receiver": "root",
        "routes": [
            {"matchers": ['team=~"ml|data"'], "continue": True, "receiver": "audit"},
            {"matchers": ['team="ml"'], "routes": [{"match": {"severity": "page"}, "receiver": "pager"}]},
            {"matchers": ['team="ml"'], "receiver": "never"},
        ],
    }
    assert receivers_for(tree, {"team": "ml", "severity": "page"}) == ["audit", "pager"]
    assert receivers_for(tree, {"team": "ml"}) == ["audit", "root"]  # inherited from the parent
    assert receivers_for(tree, {"team": "ops"}) == ["root"]
    assert parse_matcher('alertname = "Watchdog"') == ("alertname", "=", "Watchdog")
    assert parse_matcher("severity =~ warning|info") == ("severity", "=~", "warning|info")
    with pytest.raises(ValueError):
        parse_matcher("severity")


def test_amtool_accepts_the_config_and_routes_alike(amtool: str, config: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    checked = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for labels, receiver in CASES:
        args = [f"{k}={v}" for k, v in labels.items()]
        routed = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={path}", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert routed.stdout.strip() == receiver, (labels, routed.stdout, routed.stderr)
