"""Detection budgets, measured: the rules of the manifests, fed with traffic sampled from the real service at the
cluster's intervals, fire (and resolve) within each scenario's budget, and stay silent on 3 days of healthy
traffic at 1 and at 0.1 requests/s. How: detection/simulate.py; the table it prints: docs/detection.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from detection import simulate

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def results(promtool: str, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[simulate.Result]:
    workdir = tmp_path_factory.mktemp("simulate")
    cluster = simulate.cluster()
    # One sampling of the real service, shared by every scenario (each draws its own minutes from it).
    pools = simulate.sample_pools(model_dir, workdir / "servers")
    found = simulate.run(pools, cluster, workdir)
    print("\n" + simulate.table(found))
    return found


def test_the_intervals_are_the_clusters() -> None:
    cluster = simulate.cluster()
    assert (cluster.scrape_interval, cluster.evaluation_interval) == ("15s", "30s"), (
        "the declared intervals changed: re-run `python -m detection.simulate --write` and update the docs"
    )
    assert cluster.target_labels["container"] == "model-server"


@pytest.mark.parametrize("scenario", simulate.scenarios(), ids=lambda s: s.name)
def test_within_budget(results: list[simulate.Result], scenario: simulate.Scenario) -> None:
    result = next(r for r in results if r.scenario.name == scenario.name)
    assert not result.early(), f"false alarms before the fault: {result.early()}"
    if scenario.measure == "silent":
        assert not result.fired, f"alerts on healthy traffic: {sorted(result.fired)}"
    else:
        found = result.detection()
        assert found is not None and found <= scenario.budget, (
            f"{scenario.measure} of {scenario.watched_text}: {found} min, budget {scenario.budget} min; "
            f"fired: {sorted(result.fired.items())}"
        )


def test_the_fault_scenarios_fire_with_the_apps_namespace(results: list[simulate.Result]) -> None:
    # What routes the page to the team (tests/rules/test_routing.py routes every label set).
    for result in results:
        for labels in result.fired:
            assert dict(labels)["namespace"] == "ml-serving", (result.scenario.name, labels)
