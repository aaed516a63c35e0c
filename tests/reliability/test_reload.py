"""Reloads and worker restarts under THE gunicorn command: counters stay exact, the model's gauges stay put.

Each case sends N predictions, disturbs the server (SIGHUP: gunicorn re-reads its config and replaces every
worker; SIGKILL of one worker; `max_requests` recycling), sends M more, waits until the workers it expects
are the only ones left (the dead ones reaped and folded into the archive), and reads the metrics port: the
prediction and request counters moved by exactly N + M and the gauges describing the model carry the values
the model's metadata gives them.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.metrics import (
    MODEL_INFO,
    MODEL_PREDICTIONS_TOTAL,
    MODEL_REFERENCE_CLASS_RATIO,
    MODEL_REFERENCE_FEATURE_BIN_RATIO,
    MODEL_TRAINING_ACCURACY,
)
from harness.exposition import predict_200s, samples, total
from harness.load import host_port, post_once
from harness.processes import live_workers, wait_until
from harness.server import Server

WORKERS = 2
MODEL_GAUGES = (MODEL_INFO, MODEL_TRAINING_ACCURACY, MODEL_REFERENCE_FEATURE_BIN_RATIO, MODEL_REFERENCE_CLASS_RATIO)
# Each case replaces the workers at least once; a new worker boots in about a second here (more under load).
SETTLE_SECONDS = 30
FILE = re.compile(r"^[a-z_]+?_(?P<owner>\d+|archive)\.db$")


def _predict(server: Server, count: int) -> None:
    address = host_port(server.app)
    statuses = [post_once(address) for _ in range(count)]
    assert statuses == [200] * count


def _model_gauges(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {key: value for key, value in samples(text).items() if key[0] in MODEL_GAUGES}


def _expected_gauges(model_dir: Path, text: str) -> None:
    """The model gauges of one exposition against the artefact's metadata."""
    metadata = json.loads((model_dir / "metadata.json").read_text())
    gauges = _model_gauges(text)
    info = {dict(labels)["model_version"]: value for (name, labels), value in gauges.items() if name == MODEL_INFO}
    assert list(info.values()) == [1.0], info
    (version,) = info
    assert total(text, MODEL_TRAINING_ACCURACY, model_version=version) == pytest.approx(metadata["accuracy"])
    classes = {
        dict(labels)["predicted_class"]: value
        for (name, labels), value in gauges.items()
        if name == MODEL_REFERENCE_CLASS_RATIO
    }
    assert sorted(classes.values()) == pytest.approx(sorted(metadata["reference"]["class_ratios"]))
    for feature in metadata["reference"]["features"]:
        ratios = [
            value
            for (name, labels), value in gauges.items()
            if name == MODEL_REFERENCE_FEATURE_BIN_RATIO and dict(labels)["feature"] == feature["name"]
        ]
        assert sorted(ratios) == pytest.approx(sorted(feature["bin_ratios"])), feature["name"]


def _predictions(text: str) -> float:
    return total(text, MODEL_PREDICTIONS_TOTAL)


def _settled(server: Server, previous: set[int]) -> set[int]:
    """Waits until WORKERS workers run and none of `previous` is among them, and for their folds."""
    master = server.process.pid
    wait_until(
        lambda: len(live_workers(master)) == WORKERS and not live_workers(master) & previous,
        SETTLE_SECONDS,
        what="a full set of new workers",
    )
    # The master folds a dead worker's files when it reaps it, in its main loop (woken at least every second).
    wait_until(lambda: _dead_owners(server) == set(), SETTLE_SECONDS, what="the dead workers' files folded")
    return live_workers(master)


def _dead_owners(server: Server) -> set[int]:
    """Pids that own a file in the multiprocess directory and are neither the master nor a live worker."""
    owners = {
        int(m["owner"]) for p in server.multiproc.glob("*.db") if (m := FILE.match(p.name)) and m["owner"].isdigit()
    }
    return owners - {server.process.pid, *live_workers(server.process.pid)}


def _reload(server: Server) -> None:
    before = live_workers(server.process.pid)
    os.kill(server.process.pid, signal.SIGHUP)
    _settled(server, before)


def _kill_one(server: Server) -> None:
    before = live_workers(server.process.pid)
    os.kill(min(before), signal.SIGKILL)
    _settled(server, {min(before)})


DISTURBANCES = {"sighup": _reload, "sigkill": _kill_one}


@pytest.mark.parametrize("disturbance", sorted(DISTURBANCES))
def test_counters_stay_exact_and_model_gauges_stay_across(server_factory, model_dir, disturbance):
    server = server_factory(workers=WORKERS)
    baseline = server.scrape()
    _expected_gauges(model_dir, baseline)
    _predict(server, 20)
    DISTURBANCES[disturbance](server)
    after_disturbance = server.scrape()
    _expected_gauges(model_dir, after_disturbance)
    _predict(server, 30)
    _settled(server, set())
    final = server.scrape()

    assert _predictions(final) - _predictions(baseline) == 50
    assert predict_200s(final) - predict_200s(baseline) == 50
    _expected_gauges(model_dir, final)
    assert set(_model_gauges(final)) == set(_model_gauges(baseline)), "no model series appeared or vanished"


def test_max_requests_recycling_keeps_counts_exact_and_model_gauges(server_factory, model_dir):
    # Every worker exits after 7 requests: 50 predictions recycle each of the two about three times.
    server = server_factory(workers=WORKERS, MAX_REQUESTS="7", MAX_REQUESTS_JITTER="0")
    baseline = server.scrape()
    first = live_workers(server.process.pid)
    _predict(server, 50)
    _settled(server, first)
    final = server.scrape()

    assert _predictions(final) - _predictions(baseline) == 50
    assert predict_200s(final) - predict_200s(baseline) == 50
    _expected_gauges(model_dir, final)


@settings(max_examples=3, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=12), st.sampled_from(sorted(DISTURBANCES))),
        min_size=1,
        max_size=2,
    )
)
def test_any_mix_of_reloads_and_kills_keeps_every_prediction(server, model_dir, steps):
    """One server across examples: each example's count is taken against its own baseline."""
    baseline = server.scrape()
    sent = 0
    for count, disturbance in steps:
        _predict(server, count)
        sent += count
        DISTURBANCES[disturbance](server)
    final = server.scrape()
    assert _predictions(final) - _predictions(baseline) == sent
    assert predict_200s(final) - predict_200s(baseline) == sent
    _expected_gauges(model_dir, final)
