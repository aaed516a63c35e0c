"""The canary, for real: `kubectl apply -k canary` run locally (two stable pods and one canary pod of another
model version behind one port), locust traffic with ground truth for every single prediction, and the canary
rules judging the canary against stable.

- A canary trained as a one-split tree (`--estimator stump`): feedback finds it much less accurate than stable,
  and the comparison alert fires (its `accuracy` branch among others) and reaches the team's receiver.
- The canary the overlay declares (`--seed 7`, as good as stable): once the canary has the volume the alert
  needs to judge it, nothing fires at all.
- Feedback sent over a new connection for every request (no keep-alive: what a balancer that spreads requests
  does) reaches any pod: none is refused, and the pods count each item under the version that predicted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from sklearn.datasets import load_wine

from declarations.manifests import CANARY
from harness.exposition import samples
from harness.server import free_port, free_port_run
from harness.stack import compress_for, compress_routing, eventually, query, run_locust
from offcluster.config import Ports
from offcluster.stack import Stack
from tests.manifests.deploy_spec import APP_RECEIVER

ALERT = "WineClassifierCanaryWorse"
STUMP = "--estimator stump"
ROUND_SECONDS = 20
MAX_ROUNDS = 6
# The volume gates of the alert (alerts/thresholds.py), as events in its window: these must hold before the
# silence of the as-good case means anything.
WINDOW = "namespace_job_track:model_feedback:rate30m"


def canary_variant(tmp: Path, train_args: str) -> Path:
    """A kustomization: the canary overlay with the canary's model trained with `train_args` instead."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "kustomization.yaml").write_text(
        "resources:\n"
        f"  - {os.path.relpath(CANARY, tmp)}\n"
        "patches:\n"
        "  - target:\n      kind: Deployment\n      name: wine-classifier-canary\n"
        "    patch: |\n"
        "      - op: replace\n"
        "        path: /spec/template/metadata/annotations/ml-observability~1train-args\n"
        f'        value: "{train_args}"\n'
    )
    return tmp


@contextmanager
def canary_stack(state: Path, manifests: Path) -> Iterator[Stack]:
    ports = Ports(
        app=free_port(), metrics=free_port_run(4), prometheus=free_port(), alertmanager=free_port(),
        webhook=free_port(),
    )  # fmt: skip
    stack = Stack(
        state,
        ports,
        scrape_interval="1s",
        evaluation_interval="1s",
        rule_transform=compress_for,
        alertmanager_transform=compress_routing,
        with_grafana=False,
        manifests=manifests,
    )
    try:
        stack.up(timeout=90)
        yield stack
    finally:
        stack.down()


def canary_row_queries() -> list[tuple[str, str]]:
    from dashboard import queries
    from dashboard.rows import canary

    titles = {make().build().title for make in canary.PANELS}
    return [
        (t, e) for t, e in queries(namespace="ml-serving", job="wine-classifier", rate_interval="1m") if t in titles
    ]


def by_track(stack: Stack, record: str) -> dict[str, float]:
    return {r["metric"]["track"]: float(r["value"][1]) for r in query(stack, record)}


def canary_volume(stack: Stack) -> dict[str, float]:
    """The canary's requests, rows and feedback items in the alert's window, as the alert computes them."""
    return {
        name: by_track(stack, record).get("canary", 0.0) * 1800
        for name, record in (
            ("requests", "namespace_job_track:http_requests:rate30m"),
            ("rows", "namespace_job_track:model_predictions:rate30m"),
            ("feedback", WINDOW),
        )
    }


def judged(volume: dict[str, float]) -> bool:
    """Enough canary traffic for every branch of the alert (alerts/thresholds.py)."""
    return volume["requests"] >= 300 and volume["rows"] >= 500 and volume["feedback"] >= 100


def drive(stack: Stack, out: Path, done) -> float:
    """Locust traffic with feedback for every single prediction, in rounds of ROUND_SECONDS (the machine is
    shared: how much a round sends varies) until `done()`; returns the seconds of traffic it took."""
    tracks = sorted(pod.labels["track"] for pod in stack.pods)
    assert tracks == ["canary", "stable", "stable"], tracks

    def all_up():
        result = query(stack, 'up{job="wine-classifier"} == 1')
        assert sorted(r["metric"]["track"] for r in result) == tracks, result

    eventually(all_up, timeout=30)
    started = time.monotonic()
    for round_ in range(MAX_ROUNDS):
        run_locust(stack, out.with_name(f"{out.name}-{round_}"), ROUND_SECONDS, "--feedback-share", "1")
        time.sleep(3)  # the last requests scraped, the rules evaluated, the compressed `for:` passed
        if done():
            return time.monotonic() - started
    raise AssertionError(f"not done after {MAX_ROUNDS} rounds of {ROUND_SECONDS} s: {canary_volume(stack)}")


def test_a_worse_canary_fires_the_comparison_alert(tmp_path: Path):
    with canary_stack(tmp_path / "state", canary_variant(tmp_path / "stump", STUMP)) as stack:

        def signals() -> set[str]:
            firing = query(stack, f'ALERTS{{alertname="{ALERT}", alertstate="firing"}}')
            return {a["metric"]["signal"] for a in firing}

        took = drive(stack, tmp_path / "locust", lambda: "accuracy" in signals())
        fired = signals()
        accuracy = by_track(stack, "namespace_job_track:model_accuracy:ratio_rate30m")
        assert accuracy["canary"] < accuracy["stable"] - 0.1, accuracy
        versions = {
            r["metric"]["track"]: r["metric"]["model_version"]
            for r in query(stack, "namespace_job_track_version:model_info:max")
        }
        assert versions["canary"] != versions["stable"]

        def delivered():
            alerts = [
                (n["receiver"], a)
                for n in stack.alerts()
                if n["payload"]["status"] == "firing"
                for a in n["payload"]["alerts"]
                if a["labels"]["alertname"] == ALERT
            ]
            assert alerts
            return alerts

        for receiver, alert in eventually(delivered, timeout=30):
            assert receiver == APP_RECEIVER and alert["labels"]["severity"] == "critical"
        print(
            f"\nstump canary: accuracy {accuracy}, firing signals {sorted(fired)}, within {took:.0f} s of traffic "
            f"(rounds of {ROUND_SECONDS} s), canary volume {canary_volume(stack)}, versions {versions}"
        )


def feedback_counts(stack: Stack) -> dict[str, float]:
    """model_feedback_total summed by model_version over every pod's own /metrics (exact counters, no rate)."""
    counts: dict[str, float] = {}
    for pod in stack.pods:
        text = requests.get(f"http://127.0.0.1:{pod.metrics_port}/metrics", timeout=10).text
        for (name, labels), value in samples(text).items():
            if name == "model_feedback_total":
                version = dict(labels)["model_version"]
                counts[version] = counts.get(version, 0.0) + value
    return counts


@dataclass
class Tally:
    sent: dict[str, int] = field(default_factory=dict)  # items by the version that predicted
    refused: int = 0
    to_another_version: int = 0  # taken by a pod that serves another version


def feedback_over_new_connections(stack: Stack, items: int) -> Tally:
    """`items` predictions, each followed by its feedback, every request on a connection of its own."""
    wine = load_wine()
    url = f"http://127.0.0.1:{stack.ports.app}"
    close = {"Connection": "close"}
    tally = Tally()
    for i in range(items):
        j = i % len(wine.data)
        answer = requests.post(f"{url}/predict", json={"instances": [wine.data[j].tolist()]}, headers=close, timeout=10)
        answer = answer.json()
        version = answer["model_version"]
        item = {
            "predicted": answer["predictions"][0],
            "actual": str(wine.target_names[wine.target[j]]),
            "model_version": version,
            "receipt": answer["receipt"],
        }
        reply = requests.post(f"{url}/feedback", json={"feedback": [item]}, headers=close, timeout=10)
        tally.sent[version] = tally.sent.get(version, 0) + 1
        if reply.status_code != 200:
            tally.refused += 1
        elif reply.json()["model_version"] != version:  # the pod that took it says which version it serves
            tally.to_another_version += 1
    return tally


def test_feedback_over_new_connections_is_counted_under_the_version_that_predicted(tmp_path: Path):
    with canary_stack(tmp_path / "state", CANARY) as stack:
        before = feedback_counts(stack)
        tally = feedback_over_new_connections(stack, 300)
        after = feedback_counts(stack)
        counted = {v: after[v] - before.get(v, 0.0) for v in after if after[v] != before.get(v, 0.0)}
        print(f"\nfeedback over new connections: {tally}; counted by the pods, by version: {counted}")
        assert tally.refused == 0, tally
        # Both versions predicted, and some of each one's feedback reached a pod of the other version.
        assert len(tally.sent) == 2 and tally.to_another_version > 0, tally
        assert counted == {v: float(n) for v, n in tally.sent.items()}, (counted, tally)


def test_a_canary_as_good_as_stable_fires_nothing(tmp_path: Path):
    with canary_stack(tmp_path / "state", CANARY) as stack:
        took = drive(stack, tmp_path / "locust", lambda: judged(canary_volume(stack)))
        volume = canary_volume(stack)
        time.sleep(5)  # longer than the compressed `for:`: a pending alert would be firing by now
        assert not query(stack, f'ALERTS{{alertname="{ALERT}"}}')
        assert not query(stack, 'ALERTS{alertstate="firing"}'), query(stack, "ALERTS")
        assert not [n for n in stack.alerts() if n["payload"]["status"] == "firing"]
        # The dashboard's canary row shows both tracks side by side.
        for title, expr in canary_row_queries():
            tracks = {r["metric"].get("track") for r in query(stack, expr)}
            assert tracks == {"canary", "stable"} or ("track=" in expr and tracks == {"stable"}), (title, expr, tracks)
        accuracy = by_track(stack, "namespace_job_track:model_accuracy:ratio_rate30m")
        print(f"\nseed-7 canary: accuracy {accuracy}, canary volume {volume} after {took:.0f} s of traffic")


pytestmark = pytest.mark.e2e
