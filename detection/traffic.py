"""Minutes of traffic through the real app: what each minute added to every series its /metrics exports.

A minute is sampled by sending its requests (rows drawn at random from the wine data set, with the small
noise of loadtest/rows.py, altered as the traffic says) to the real gunicorn service, then reading
/metrics before and after. Requests go out as fast as the service answers: a "minute" is its request count
(Poisson around rate x 60), not 60 s of wall time. Input-bin counts reach /metrics up to a flush interval
late, so a minute ends only once every accepted row's values are counted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import requests

from app.metrics import MODEL_INPUT_FEATURE_BIN_TOTAL, MODEL_PREDICTIONS_TOTAL, MODEL_REFERENCE_FEATURE_BIN_RATIO
from harness.exposition import SampleKey, typed_samples
from loadtest.rows import CLASSES, FEATURES, STD, noisy_rows

SeriesKey = SampleKey
Sample = dict[SeriesKey, float]

FEEDBACK_SHARE = 0.3


@dataclass(frozen=True)
class Traffic:
    """What one minute of client traffic looks like."""

    name: str
    rate: float = 1.0  # requests per second
    feature: str = ""
    alter: str = ""  # "shift" (+1 standard deviation), "zero", "x1000"
    mislabelled: str = ""  # feedback reports this class's rows as the next class
    model: bool = True  # False: the service has no model and answers every /predict with a 5xx
    estimator: str = ""  # the model family the service runs (`python -m app.train --estimator`); "": the default

    def rows(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[str]]:
        rows, classes = noisy_rows(rng, n)
        if self.feature:
            j = FEATURES.index(self.feature)
            if self.alter == "shift":
                rows[:, j] += STD[j]
            elif self.alter == "zero":
                rows[:, j] = 0.0
            elif self.alter == "x1000":
                rows[:, j] *= 1000
        return np.round(rows, 4), classes

    def reported(self, actual: str) -> str:
        return CLASSES[(CLASSES.index(actual) + 1) % len(CLASSES)] if actual == self.mislabelled else actual


def scrape(url: str) -> Sample:
    return dict(_read(url)[0])


def gauges(url: str) -> set[str]:
    """Names of the gauges /metrics exports (the rest are counters and histogram series: cumulative)."""
    return _read(url)[1]


def _read(url: str) -> tuple[Sample, set[str]]:
    typed = typed_samples(requests.get(url, timeout=10).text)
    return {key: value for key, (_, value) in typed.items()}, {
        key[0] for key, (kind, _) in typed.items() if kind == "gauge"
    }


def _total(sample: Sample, name: str) -> float:
    return sum(v for (n, _), v in sample.items() if n == name)


def _settled(sample: Sample) -> bool:
    # Every predicted row adds one value per monitored feature (those with reference bins: all 13 unless the
    # model was trained with fewer drift features) to the bin counters, once its worker has flushed.
    monitored = {dict(labels)["feature"] for name, labels in sample if name == MODEL_REFERENCE_FEATURE_BIN_RATIO}
    return _total(sample, MODEL_INPUT_FEATURE_BIN_TOTAL) == len(monitored) * _total(sample, MODEL_PREDICTIONS_TOTAL)


def settle(metrics_url: str, timeout: float = 10.0) -> Sample:
    deadline = time.monotonic() + timeout
    while True:
        sample = scrape(metrics_url)
        if _settled(sample) or time.monotonic() > deadline:
            return sample
        time.sleep(0.05)


def minute(app_url: str, session: requests.Session, traffic: Traffic, rng: np.random.Generator) -> None:
    """Send one minute's requests: single-row predictions, a share followed by feedback."""
    rows, actual = traffic.rows(rng, int(rng.poisson(traffic.rate * 60)))
    for row, truth in zip(rows.tolist(), actual, strict=True):
        response = session.post(f"{app_url}/predict", json={"instances": [row]}, timeout=10)
        if response.status_code != 200 or rng.random() >= FEEDBACK_SHARE:
            continue
        item = {"receipt": response.json()["receipt"], "actual": traffic.reported(truth)}
        session.post(f"{app_url}/feedback", json={"feedback": [item]}, timeout=10).raise_for_status()


def sample_minutes(
    app_url: str, metrics_url: str, traffic: Traffic, count: int, rng: np.random.Generator
) -> tuple[Sample, list[Sample]]:
    """`count` minutes of `traffic`: the /metrics state before them, and what each minute added to each series."""
    session = requests.Session()
    before = settle(metrics_url)
    start = before
    increments: list[Sample] = []
    for _ in range(count):
        minute(app_url, session, traffic, rng)
        after = settle(metrics_url)
        increments.append({key: value - before.get(key, 0.0) for key, value in after.items()})
        before = after
    return start, increments


def names(samples: Iterable[Sample]) -> set[str]:
    return {name for sample in samples for name, _ in sample}
