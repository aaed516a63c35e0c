"""Prometheus restarted mid-run, gracefully (SIGTERM, a rolling update of the StatefulSet) and by a crash
(SIGKILL, an OOM kill): every sample it had scraped before is still there afterwards, sample for sample, and
scraping resumes. The local stack runs the real Debian Prometheus on free ports with 1 s scrapes."""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness.load import BODY
from harness.processes import report, wait_until
from harness.server import free_port, free_port_run
from offcluster.config import Ports
from offcluster.stack import Stack

Raw = dict[tuple[tuple[str, str], ...], list[tuple[float, str]]]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[Stack]:
    ports = Ports(
        app=free_port(), metrics=free_port_run(2), prometheus=free_port(), alertmanager=free_port(), webhook=free_port()
    )
    state = tmp_path_factory.mktemp("stack")
    shutil.copytree(model_dir, state / "model")  # the session's artefact: no second training run
    running = Stack(state, ports, scrape_interval="1s", evaluation_interval="1s", with_grafana=False)
    running.up(timeout=90)
    yield running
    running.down()


def raw_samples(stack: Stack, selector: str, at: float) -> Raw:
    """Every stored sample of `selector` in the hour before `at`, by series: what Prometheus has on disk."""
    response = requests.get(
        f"{stack.urls['prometheus']}/api/v1/query", params={"query": f"{selector}[1h]", "time": at}, timeout=10
    )
    response.raise_for_status()
    return {
        tuple(sorted(series["metric"].items())): [(float(t), v) for t, v in series["values"]]
        for series in response.json()["data"]["result"]
    }


def points(raw: Raw) -> int:
    return sum(len(values) for values in raw.values())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["graceful", "crash"])
def test_samples_scraped_before_a_prometheus_restart_are_still_queryable_after(stack: Stack, sig: signal.Signals):
    for _ in range(20):
        requests.post(f"{stack.urls['app']}/predict", data=BODY, headers={"Content-Type": "application/json"})
    selectors = ['up{job=~".+"}', 'http_requests_total{route="/predict",status="200"}']
    # Enough history: several scrapes of the target, including ones that saw the predictions above.
    wait_until(
        lambda: points(raw_samples(stack, selectors[1], time.time())) >= 5,
        30,
        interval=0.5,
        what="five scrapes with the predictions",
    )
    # A scrape is stamped when it starts and visible once appended: leave the last second out of the comparison.
    before_restart = time.time() - 1.5
    before = {s: raw_samples(stack, s, before_restart) for s in selectors}

    stack.stop("prometheus", sig=sig)
    assert "prometheus" not in stack.running()
    stack.up(timeout=90)  # idempotent: starts only what is not running, i.e. Prometheus
    after = {s: raw_samples(stack, s, before_restart) for s in selectors}
    report(
        "prometheus_restart",
        signal=sig.name,
        points_before={s: points(r) for s, r in before.items()},
        points_after={s: points(r) for s, r in after.items()},
    )

    for selector in selectors:
        assert before[selector], f"nothing stored for {selector} before the restart"
        # Exactly the same series, timestamps and values: nothing lost, nothing rewritten.
        assert after[selector] == before[selector], selector
    # And scraping resumed: new samples after the restart.
    wait_until(
        lambda: points(raw_samples(stack, selectors[0], time.time())) > points(before[selectors[0]]) + 2,
        20,
        interval=0.5,
        what="scrapes after the restart",
    )
