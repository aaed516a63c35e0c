"""Locust's own statistics as Prometheus metrics, on `/metrics` of the master's web UI port (8089).

Imported by the locustfile. Only the runner that holds the aggregated numbers serves them: a master (what its
workers reported) or a standalone run; workers and headless runs (no web UI: use `--autostart` instead of
`--headless` to keep one) serve nothing. Each scrape reads `environment.runner.stats` as it is then, through
a collector in a registry of its own (nothing of locust's process or of the app's metrics mixes in). Names:
loadtest/metrics.py.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Response
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from loadtest.metrics import (
    LOCUST_FAILURES_TOTAL,
    LOCUST_REQUESTS_TOTAL,
    LOCUST_RESPONSE_TIME_SECONDS,
    LOCUST_USERS,
    LOCUST_WORKERS,
    QUANTILES,
)

PATH = "/metrics"
LABELS = ("name", "method")


def _family(name: str) -> str:
    """prometheus_client adds `_total` to a counter family's name itself."""
    return name.removesuffix("_total")


class LocustCollector(Collector):
    def __init__(self, environment: Environment) -> None:
        self.environment = environment

    def collect(self) -> Iterator[Metric]:
        runner = self.environment.runner
        if runner is None:
            return
        requests = CounterMetricFamily(
            _family(LOCUST_REQUESTS_TOTAL), "Requests locust sent, by request name and method.", labels=LABELS
        )
        failures = CounterMetricFamily(
            _family(LOCUST_FAILURES_TOTAL),
            "Requests locust counted as failed, by request name and method.",
            labels=LABELS,
        )
        # A summary: quantiles over a sliding window with cumulative count and sum, as Prometheus client
        # libraries' summaries do (promtool refuses a `quantile` label on any other type).
        latency = Metric(
            LOCUST_RESPONSE_TIME_SECONDS,
            "Response-time percentiles over locust's sliding window (about the last 10 s); count and sum since the run "
            "started.",
            "summary",
        )
        # A copy: workers' reports update the dict between greenlet switches.
        for (name, method), entry in list(runner.stats.entries.items()):
            labels = [name, method or ""]
            requests.add_metric(labels, entry.num_requests)
            failures.add_metric(labels, entry.num_failures)
            named = dict(zip(LABELS, labels, strict=True))
            if entry.use_response_times_cache:
                for q in QUANTILES:
                    milliseconds = entry.get_current_response_time_percentile(q)
                    if milliseconds is not None:
                        latency.add_sample(
                            LOCUST_RESPONSE_TIME_SECONDS, {**named, "quantile": str(q)}, milliseconds / 1e3
                        )
            latency.add_sample(f"{LOCUST_RESPONSE_TIME_SECONDS}_count", named, entry.num_requests)
            latency.add_sample(f"{LOCUST_RESPONSE_TIME_SECONDS}_sum", named, entry.total_response_time / 1e3)
        yield requests
        yield failures
        yield latency
        yield GaugeMetricFamily(LOCUST_USERS, "Users running now, over all workers.", value=runner.user_count)
        if isinstance(runner, MasterRunner):
            yield GaugeMetricFamily(LOCUST_WORKERS, "Workers connected to this master.", value=runner.worker_count)


def registry_for(environment: Environment) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LocustCollector(environment))
    return registry


@events.init.add_listener
def _serve_metrics(environment: Environment, runner, web_ui, **_kwargs) -> None:
    if web_ui is None or isinstance(runner, WorkerRunner):
        return
    registry = registry_for(environment)
    web_ui.app.add_url_rule(
        PATH, "prometheus_metrics", lambda: Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    )
