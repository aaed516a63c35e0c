"""Reading a Prometheus exposition: one parser for tests and benchmarks, plus a scraper thread."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

SampleKey = tuple[str, tuple[tuple[str, str], ...]]
# Counters, and histograms of non-negative observations (durations, confidences, row counts), whose `_sum`
# grows too: their samples may only grow.
MONOTONIC_TYPES = {"counter", "histogram"}


def samples(text: str) -> dict[SampleKey, float]:
    """{(sample name, sorted labels): value} for every sample in the exposition."""
    return {key: value for key, (_, value) in typed_samples(text).items()}


def by_name(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """{sample name: [(labels, value), ...]} for every sample in the exposition."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for (name, labels), value in samples(text).items():
        found.setdefault(name, []).append((dict(labels), value))
    return found


def total(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels`."""
    return sum(
        value
        for (sample, sample_labels), value in samples(text).items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


def predict_200s(text: str) -> float:
    """Requests /predict answered 200, as the service counted them."""
    return total(text, "http_requests_total", method="POST", route="/predict", status="200")


def typed_samples(text: str) -> dict[SampleKey, tuple[str, float]]:
    """{(sample name, sorted labels): (family type, value)} for every sample of an exposition: the one parser."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): (family.type, float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@dataclass
class Scraper:
    """Scrapes `/metrics` every `interval` seconds in a thread and keeps every parsed scrape."""

    url: str
    interval: float = 0.1
    scrapes: list[dict[SampleKey, tuple[str, float]]] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    error_details: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                response = session.get(self.url, timeout=5)
                response.raise_for_status()
                self.durations.append(time.perf_counter() - started)
                self.scrapes.append(typed_samples(response.text))
            except requests.RequestException as exc:
                self.errors[type(exc).__name__] += 1
                self.error_details.append(str(exc)[:300])
            self._stop.wait(self.interval)

    def start(self) -> Scraper:
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


def monotonicity_violations(
    scrapes: list[dict[SampleKey, tuple[str, float]]],
) -> list[str]:
    """Every counter/histogram sample that went down between two consecutive scrapes, and every series
    (of any type) that was exposed by one scrape and missing from the next."""
    problems = []
    for i, (before, after) in enumerate(itertools.pairwise(scrapes)):
        for key, (kind, value) in before.items():
            if key not in after:
                problems.append(f"scrape {i + 1}: {key} disappeared")
            elif kind in MONOTONIC_TYPES and after[key][1] < value:
                problems.append(f"scrape {i + 1}: {key} went from {value!r} to {after[key][1]!r}")
    return problems


def read_multiproc_dir(directory: Path) -> str:
    """The exposition the master would serve, read straight from the multiprocess files (for after it exited)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=str(directory))
    return generate_latest(registry).decode()
